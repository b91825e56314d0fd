"""The measuring kit: timing, memory, FLOPs, per-component profiles and result records.

- ``timing``:  ``time_fn``, ``measure_step`` (-> ``StepResult``), ``measure_sweep`` (errors as rows)
- ``flops``:   analytic per-component cost model (``cost_table``, ``model_flops``), FlopCounterMode
               cross-check (``count_flops``), peak table and ``mfu``
- ``memory``:  ``MemoryBreakdown`` on CPU (exact, saved-tensor hooks) and CUDA (peak stats),
               ``saved_bytes(fn, *args)``
- ``profile``: per-component time shares from ``torch.profiler`` scopes, Chrome trace export
- ``records``: versioned JSON result files: one writer, one validated loader

Nothing here imports Jupyter, ipywidgets or matplotlib.
"""
