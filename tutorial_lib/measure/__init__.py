"""The measuring kit: timing, memory, FLOPs, per-component profiles and result records.

- ``timing``:  ``time_fn``, ``measure_step`` (-> ``StepResult``), ``measure_sweep`` (errors as rows)
- ``flops``:   analytic per-component cost model (``cost_table``, ``model_flops``), FlopCounterMode
               cross-check (``count_flops``), peak table and ``mfu``
- ``memory``:  ``MemoryBreakdown`` on CPU (exact, saved-tensor hooks) and CUDA (peak stats),
               ``saved_bytes(fn, *args)``
- ``profile``: per-component time shares from ``torch.profiler`` scopes, Chrome trace export
- ``records``: versioned JSON result files: one writer, one validated loader
- ``roofline``: the machine's ceilings (``measure_ceilings``: peak matmul FLOP/s, bandwidth, first
               touch, per-op overhead; ``spec_ceilings`` from the datasheets), the bytes and kernels
               of every component (``traffic_table``, ``saved_table``) and time predictions
               (``predict_step``)
- ``traffic``: what PyTorch dispatches, counted per component (``count_step_traffic``): the
               roofline model's truth

Nothing here imports Jupyter, ipywidgets or matplotlib.
"""
