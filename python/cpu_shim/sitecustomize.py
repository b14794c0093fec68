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
    if os.environ.get("SGLJAX_CPU_SHIM") == "1":
        hooks[KV_POOL] = ("after", _patch_kv_pool)
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
