"""The measuring kit: timing, memory, FLOPs, per-component profiles and result records.

- ``cost``:     the one analytic model of a training step: its kernels with their FLOPs and bytes
                (``step_kernels``), FLOPs per component in three conventions (``flops_by_scope``,
                ``step_flops``), what backward keeps (``activation_bytes``, ``training_memory``)
- ``ceilings``: the machine's ceilings, one probe and one rule each (``measure_ceilings``: peak
                matmul FLOP/s, bandwidth, first touch, per-op overhead; ``spec_ceilings`` from the
                datasheets) and the one lookup (``ceilings_for``)
- ``roofline``: a step's time predicted from the two (``predict_step``), bound labels, and steps
                predicted and measured in the same rounds (``check_steps``)
- ``timing``:   ``time_fn``, interleaved rounds (``time_rounds``), ``measure_step`` (->
                ``StepResult``), ``measure_sweep`` (errors as rows)
- ``flops``:    FlopCounterMode's count (``count_flops``: the cost model's truth), the GPU
                datasheets and ``mfu``
- ``memory``:   ``MemoryBreakdown`` on CPU (exact, saved-tensor hooks) and CUDA (peak stats),
                ``saved_bytes(fn, *args)``
- ``profile``:  per-component time shares from ``torch.profiler`` scopes, Chrome trace export
- ``records``:  versioned JSON result files: one writer, one validated loader
- ``traffic``:  what PyTorch dispatches, counted per component (``count_step_traffic``): the
                cost model's truth for bytes and kernels
- ``peak``:     a training step's allocator peak, predicted from the cost model (``step_peak``)
                and measured (``measured_step_peak``)

Nothing here imports Jupyter, ipywidgets or matplotlib.
"""
