"""Run-time patches that let an unmodified sglang-jax wheel serve on a CPU.

sglprof puts this folder on PYTHONPATH of the server it launches, so Python
imports this module at start-up in the launcher and in every process the
launcher spawns (scheduler, detokenizer). Nothing on disk is changed: each
patch hooks the import of one sgl_jax module and is switched on by its own
environment variable, so a server started without those variables behaves
exactly as shipped.

SGLJAX_CPU_SHIM=1 (sglang-jax 0.0.1.post1 and 0.0.2)
    The KV cache is written by a Pallas kernel that only lowers on TPU
    (memory_pool.kv_cache_update); on CPU JAX rejects it and its interpreters
    cannot run it either. The function is swapped for an XLA scatter that
    honours the same arguments.

SGLJAX_HOST_TABLES=1 (sglang-jax 0.0.1.post1 on CPU)
    The scheduler keeps its bookkeeping of token slots (the request-to-token
    table, the slots the KV allocator hands out, the radix cache's values) in
    JAX arrays and edits them with eager JAX operations: slices, scatters and
    gathers whose shapes are the exact token counts of each prefill batch and
    request. Each new count compiles a small XLA program inside the serving
    loop, so a profile of a varied workload is full of compilations that no
    warmup can exhaust. With this switch the same tables are NumPy arrays,
    edited copy-on-write so that every earlier reader keeps the values it
    read, as with JAX's immutable arrays. The integers are the same; on a
    CPU the JAX arrays lived in host memory anyway. The model's inputs are
    still built and padded by the server as shipped. Never set on a TPU,
    where these tables live in device memory.

SGLJAX_PY311_BACKPORT=1 (0.0.2 on Python 3.11)
    tokenizer_manager.py declares `class _Communicator[T]:` (PEP 695 syntax,
    Python 3.12+), the only such construct in the package. The module source
    is rewritten while it is compiled to use typing.Generic instead.

SGLJAX_NATIVE_PYTREE_FIX=1 (0.0.2 with flax 0.12)
    flax 0.12 already registers every nnx.Module as a pytree, so the second
    registration in native_backend.py raises "Duplicate custom PyTreeDef".
    While that module runs, a duplicate registration is skipped.

SGLJAX_SAMPLER_FIX=1 (0.0.2 off TPU)
    The non-TPU sampling path hands three operands to _apply_min_p_filter,
    which unpacks two. The wrapper passes the first two along.
"""

import importlib.abc
import importlib.util
import os
import sys

KV_POOL = "sgl_jax.srt.mem_cache.memory_pool"
KV_ALLOCATOR = "sgl_jax.srt.mem_cache.allocator"
RADIX_CACHE = "sgl_jax.srt.mem_cache.radix_cache"
SCHEDULE_BATCH = "sgl_jax.srt.managers.schedule_batch"
SAMPLING_INFO = "sgl_jax.srt.sampling.sampling_batch_info"
TOKENIZER_MANAGER = "sgl_jax.srt.managers.tokenizer_manager"
NATIVE_BACKEND = "sgl_jax.srt.layers.attention.native_backend"
SAMPLER = "sgl_jax.srt.layers.sampler"


def _note(text):
    if os.environ.get("SGLJAX_CPU_SHIM_QUIET") != "1":
        sys.stderr.write("[sglprof cpu shim, pid %d] %s\n" % (os.getpid(), text))


def scatter_kv_cache_update(new_kv, slices, kv_cache, num_kv_update_slices,
                            *, page_size=1, **_unused):
    """XLA replacement for the Pallas KV-cache write.

    `slices` has shape [3, S]: row 0 is where each slice starts in the cache,
    row 1 where it starts in `new_kv`, row 2 its length (at most page_size).
    Only the first `num_kv_update_slices[0]` slices are real; the others are
    padding and must not touch the cache.
    """
    import jax.numpy as jnp

    dst_start, src_start, length = slices[0], slices[1], slices[2]
    n_slices = slices.shape[1]
    in_page = jnp.arange(page_size, dtype=jnp.int32)[None, :]
    live = (jnp.arange(n_slices, dtype=jnp.int32) < num_kv_update_slices[0])[:, None]
    keep = live & (in_page < length[:, None])
    rows_from = jnp.clip(src_start[:, None] + in_page, 0, new_kv.shape[0] - 1).reshape(-1)
    # Rows that must be skipped point one past the end; mode="drop" ignores them.
    rows_to = jnp.where(keep, dst_start[:, None] + in_page, kv_cache.shape[0]).reshape(-1)
    return kv_cache.at[rows_to].set(new_kv[rows_from].astype(kv_cache.dtype), mode="drop")


def _patch_kv_pool(module):
    if hasattr(module, "kv_cache_update"):
        module.kv_cache_update = scatter_kv_cache_update
        _note("KV-cache write uses an XLA scatter")


def _host_req_to_token(module):
    import numpy as np

    pool = module.ReqToTokenPool
    plain_init, plain_clear = pool.__init__, pool.clear

    def to_host(self):
        self.req_to_token = np.array(self.req_to_token)

    def host_index(indices):
        parts = indices if isinstance(indices, tuple) else (indices,)
        return tuple(p if isinstance(p, (slice, int)) else np.asarray(p) for p in parts)

    def __init__(self, *args, **kwargs):
        plain_init(self, *args, **kwargs)
        to_host(self)

    def clear(self):
        plain_clear(self)
        to_host(self)

    def write(self, indices, values):
        # A fresh table for each edit: views taken before stay as they were.
        table = self.req_to_token.copy()
        table[host_index(indices)] = np.asarray(values)
        self.req_to_token = table

    def free(self, free_index):
        if isinstance(free_index, int):
            self.free_slots.append(free_index)
            rows = [free_index]
        else:
            self.free_slots.extend(free_index)
            rows = list(free_index)
        table = self.req_to_token.copy()
        table[rows] = 0
        self.req_to_token = table

    pool.__init__, pool.clear, pool.write, pool.free = __init__, clear, write, free
    _note("request-to-token table kept in NumPy")


def _host_kv_slots(module):
    import numpy as np

    allocator = module.TokenToKVPoolAllocator

    def alloc(self, need_size):
        if need_size > self.available_size():
            return None
        select_index = np.array(self.free_slots[:need_size])
        self.free_slots = self.free_slots[need_size:]
        return select_index

    allocator.alloc = alloc
    _note("KV slot allocator hands out NumPy indices")


def _host_radix_values(module):
    import numpy as np

    cache = module.RadixCache

    def empty():
        return np.empty((0,), dtype=np.int32)

    def _create_tokens_data(self, tokens):
        return np.asarray(tokens, dtype=np.int32)

    def _get_node_size(self, node):
        return 0 if node.value is None else len(node.value)

    def match_prefix(self, key, **kwargs):
        last = self.root_node
        indices = empty()
        if not self.disable and len(key) > 0:
            if self.page_size != 1:
                key = key[: len(key) // self.page_size * self.page_size]
            values, last = self._match_prefix_helper(self.root_node, key)
            parts = [np.asarray(v, dtype=np.int32) for v in values if v is not None and len(v) > 0]
            if parts:
                indices = np.concatenate(parts)
        return module.MatchResult(device_indices=indices, last_device_node=last,
                                  last_host_node=last, host_hit_length=0)

    # A chunked request's cached slots are copied to the device only to be
    # sliced and written back to the (NumPy) table: they stay on the host.
    module.device_array = lambda _mesh, data, *args, **kwargs: np.asarray(data)
    cache._create_tokens_data = _create_tokens_data
    cache._get_node_size = _get_node_size
    cache.match_prefix = match_prefix
    _note("radix cache keeps NumPy slot indices")


class _HostBuiltArrays:
    """jax.numpy for one module, except that `array` of a Python list or a
    NumPy array and `concat` build the result with NumPy and then place it
    where JAX would: the same values, without an XLA program per length."""

    def __init__(self, jnp):
        self._jnp = jnp

    def __getattr__(self, name):
        return getattr(self._jnp, name)

    def array(self, obj, dtype=None, *args, **kwargs):
        import jax
        import numpy as np

        if isinstance(obj, (list, np.ndarray)) and not args and not kwargs:
            host = np.asarray(obj, dtype=dtype)
            if dtype is None:
                # The dtype jnp.array would give (64-bit types narrowed).
                host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False)
            # jnp.asarray would still convert on the device, once per length.
            return jax.device_put(host)
        return self._jnp.array(obj, dtype, *args, **kwargs)

    def concat(self, arrays, axis=0):
        import jax
        import numpy as np

        joined = np.concatenate([np.asarray(a) for a in arrays], axis=axis)
        placed = [a for a in arrays if isinstance(a, jax.Array)]
        return jax.device_put(joined, placed[0].sharding if placed else None)


_BATCH_ARRAYS = ("req_pool_indices", "seq_lens", "output_ids")
_SAMPLING_ARRAYS = ("temperatures", "top_ps", "top_ks", "min_ps")


def _host_batch_arrays(module):
    import jax
    import numpy as np

    module.jnp = _HostBuiltArrays(module.jnp)
    batch = module.ScheduleBatch
    plain_worker_batch, plain_filter = batch.get_model_worker_batch, batch.filter_batch

    def get_model_worker_batch(self, *args, **kwargs):
        # The ids are flattened and copied to the host there; NumPy does
        # both without compiling a program per prefill length.
        if self.input_ids is not None:
            self.input_ids = np.asarray(self.input_ids)
        return plain_worker_batch(self, *args, **kwargs)

    def filter_batch(self, *args, **kwargs):
        # The batch's per-request arrays are indexed on the host and put
        # back where they were, instead of a gather per pair of sizes.
        owners = [(self, _BATCH_ARRAYS), (self.sampling_info, _SAMPLING_ARRAYS)]
        places = {}
        for owner, names in owners:
            for name in names:
                value = getattr(owner, name, None)
                if isinstance(value, jax.Array):
                    places[(id(owner), name)] = value.sharding
                    setattr(owner, name, np.asarray(value))
        try:
            return plain_filter(self, *args, **kwargs)
        finally:
            for owner, names in owners:
                for name in names:
                    value = getattr(owner, name, None)
                    sharding = places.get((id(owner), name))
                    if sharding is not None and isinstance(value, np.ndarray):
                        setattr(owner, name, jax.device_put(value, sharding))

    batch.get_model_worker_batch = get_model_worker_batch
    batch.filter_batch = filter_batch
    _note("scheduler batches built, filtered and merged in NumPy")


def _host_sampling_merge(module):
    module.jnp = _HostBuiltArrays(module.jnp)
    _note("sampling parameters merged in NumPy")


def _backport_generic_class(source):
    pep695 = b"\n\nclass _Communicator[T]:"
    if pep695 not in source:
        return source
    _note("tokenizer_manager: _Communicator[T] rewritten for Python 3.11")
    # Two lines replace two lines, so tracebacks keep their line numbers.
    generic = (b"\nimport typing as _sglprof_typing; T = _sglprof_typing.TypeVar('T')\n"
               b"class _Communicator(_sglprof_typing.Generic[T]):")
    return source.replace(pep695, generic)


def _run_with_lenient_pytree_registration(execute):
    import jax.tree_util

    strict = jax.tree_util.register_pytree_node_class

    def lenient(cls):
        try:
            return strict(cls)
        except ValueError as err:
            if "Duplicate custom PyTreeDef" not in str(err):
                raise
            _note("native attention backend: kept flax's pytree registration of %s" % cls.__name__)
            return cls

    jax.tree_util.register_pytree_node_class = lenient
    try:
        execute()
    finally:
        jax.tree_util.register_pytree_node_class = strict


def _patch_sampler(module):
    original = getattr(module, "_apply_min_p_filter", None)
    if original is None:
        return

    def first_two_operands(operands):
        return original(tuple(operands)[:2])

    module._apply_min_p_filter = first_two_operands
    _note("sampler: min-p filter takes the first two operands")


def _hooks_from_environment():
    hooks = {}

    def after(module, *actions):
        previous = hooks.get(module, ("after", lambda _m: None))[1]

        def run(loaded):
            previous(loaded)
            for action in actions:
                action(loaded)

        hooks[module] = ("after", run)

    if os.environ.get("SGLJAX_CPU_SHIM") == "1":
        after(KV_POOL, _patch_kv_pool)
    if os.environ.get("SGLJAX_HOST_TABLES") == "1":
        after(KV_POOL, _host_req_to_token)
        after(KV_ALLOCATOR, _host_kv_slots)
        after(RADIX_CACHE, _host_radix_values)
        after(SCHEDULE_BATCH, _host_batch_arrays)
        after(SAMPLING_INFO, _host_sampling_merge)
    if os.environ.get("SGLJAX_PY311_BACKPORT") == "1" and sys.version_info < (3, 12):
        hooks[TOKENIZER_MANAGER] = ("source", _backport_generic_class)
    if os.environ.get("SGLJAX_NATIVE_PYTREE_FIX") == "1":
        hooks[NATIVE_BACKEND] = ("around", _run_with_lenient_pytree_registration)
    if os.environ.get("SGLJAX_SAMPLER_FIX") == "1":
        hooks[SAMPLER] = ("after", _patch_sampler)
    return hooks


class _ImportHook(importlib.abc.MetaPathFinder):
    """Finds the real spec of a hooked module and wraps its loader."""

    def __init__(self, hooks):
        self.hooks = hooks

    def find_spec(self, fullname, path, target=None):
        hook = self.hooks.get(fullname)
        if hook is None:
            return None
        # Ask the other finders; this one steps aside while they look.
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        kind, action = hook
        loader = spec.loader
        if kind == "source":
            def get_code(name, _loader=loader):
                filename = _loader.get_filename(name)
                source = action(_loader.get_data(filename))
                return compile(source, filename, "exec", dont_inherit=True)

            loader.get_code = get_code
        else:
            plain_exec = loader.exec_module

            def exec_module(module, _plain=plain_exec):
                if kind == "after":
                    _plain(module)
                    action(module)
                else:
                    action(lambda: _plain(module))

            loader.exec_module = exec_module
        return spec


_HOOKS = _hooks_from_environment()
if _HOOKS:
    sys.meta_path.insert(0, _ImportHook(_HOOKS))
