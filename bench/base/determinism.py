"""The reproducibility policy: which numerical code paths the math libraries may take.

A result must be a function of its inputs alone. On a CPU three libraries pick their kernels by
the processor they find, and those kernels round differently:

* MKL (torch's matrix products, its LAPACK and some element-wise functions) chooses a code
  branch per CPU (AVX-512 on most Intel Xeons, AVX2 on many AMD EPYCs) and, outside its
  conditional numerical reproducibility (CNR) mode, may give other last bits from one call to
  the next on the same data (memory alignment, thread count): a refit of the same cell in the
  same process differed on an AMD EPYC.
* ATen (torch's own kernels: softmax, reductions, ...) dispatches to AVX-512 or AVX2 code.
* oneDNN (torch's convolutions and some activations on a CPU) JIT-compiles for the widest ISA.

Measured here (Intel Xeon, AVX-512; tests/test_determinism.py): MKL's branch changes matrix
products and ``exp``, ATen's changes softmax, oneDNN's changes GELU; under MKL's default mode
text embeddings differed between a batch of 3 and of 40 prompts, under ``AVX2,STRICT`` they
do not.

Policies (``bench run --determinism``, ``BENCH_DETERMINISM``, default ``portable``):

* ``portable``: every library on its AVX2 path, MKL in strict CNR mode (bitwise results that do
  not depend on the thread count for its matrix products), OpenBLAS on its Haswell kernels.
  The same cell gives the same bits on any x86-64 CPU with AVX2 (Intel since 2013, AMD since
  2015), whatever its vendor or widest ISA. It costs the speed of AVX-512 where a CPU has it.
* ``native``: MKL in strict CNR mode on the CPU's own best branch; the other libraries free.
  Reproducible run to run on one kind of CPU, not across kinds.
* ``off``: nothing set (the libraries' defaults, or whatever the environment sets).

On CUDA every policy but ``off`` turns on torch's deterministic algorithms (warn-only: an
operation without a deterministic kernel warns once instead of failing the cell), cuBLAS's
fixed workspace (``CUBLAS_WORKSPACE_CONFIG``), cuDNN's deterministic, non-benchmarked
algorithms, and TF32 off. CUDA results are reproducible on the same GPU model and software
stack; no policy makes them equal across GPU models or to a CPU's.

The CPU part works through environment variables that each library reads once, when it first
computes: :func:`apply` sets them at ``import bench`` (before torch computes anything), and child
processes (submitit's local and SLURM jobs) inherit them. :func:`check` tells whether they took
effect; :func:`describe` is the ``determinism`` block every result records. This module imports
nothing heavy: torch is read only by :func:`check`, :func:`describe` and :func:`apply_torch`.
"""

from __future__ import annotations

import ctypes
import os
import platform
from functools import lru_cache

from bench.base.errors import BenchError, UsageError

ENV = "BENCH_DETERMINISM"
# Images are encoded in batches of at least this many (smaller ones are padded): on one thread
# oneDNN's small-batch convolution kernels give other bits than its large-batch ones (batches of
# at most 9 differed from batches of 16 or more on an AVX-512 Xeon), so an image's features would
# depend on how many images were encoded with it.
MIN_BATCH = 16
DEFAULT = "portable"
POLICIES = ("portable", "native", "off")

# What each policy sets before the libraries start (None: left as the environment has it).
_CPU_ENV = {
    "portable": {"MKL_CBWR": "AVX2,STRICT", "ATEN_CPU_CAPABILITY": "avx2",
                 "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell",
                 "MKL_DYNAMIC": "FALSE"},
    "native": {"MKL_CBWR": "AUTO,STRICT", "MKL_DYNAMIC": "FALSE"},
    "off": {},
}
_MANAGED = sorted({k for env in _CPU_ENV.values() for k in env})
# cuBLAS's deterministic workspace (read when its first handle is made: harmless on a CPU).
_CUBLAS = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
# The variables bench itself set, and to what: told apart from the user's. A child process
# inherits them with MARK, which lists them, so that it can undo them too (a `bench run
# --determinism off` started by a bench process, or a benchmark's runs, really runs without).
MARK = "BENCH_DETERMINISM_SET"
_applied: dict = {}


def _inherited() -> dict:
    """What a bench parent set (``MARK``) and the environment still holds as it was set."""
    pairs = (item.partition("=") for item in os.environ.get(MARK, "").split(";") if item)
    return {k: v for k, _, v in pairs if k in _MANAGED + list(_CUBLAS) and os.environ.get(k) == v}


_applied.update(_inherited())
_replaced: dict = {}  # the user's values that a policy replaced in this process


def check_policy(value: str, where: str = "--determinism") -> str:
    if value not in POLICIES:
        sep = "" if where.endswith("=") else " "
        raise UsageError(f"{where}{sep}{value!r}: choose one of {', '.join(POLICIES)} (portable: "
                         f"the same bits on any x86-64 CPU with AVX2; native: reproducible on "
                         f"this kind of CPU only, faster where it has AVX-512; off: nothing set)")
    return value


def requested() -> str:
    """The policy asked for by ``BENCH_DETERMINISM`` (default ``portable``)."""
    return check_policy(os.environ.get(ENV, DEFAULT) or DEFAULT, f"{ENV}=")


@lru_cache(maxsize=None)
def _cpu_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def portable_available() -> bool:
    """An x86-64 CPU with AVX2 and FMA (where ``portable`` is defined)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    flags = _cpu_flags()
    return not flags or {"avx2", "fma"} <= flags  # no /proc/cpuinfo: trust the machine


def effective(policy: str) -> str:
    """``policy`` as it can be on this machine: ``portable`` needs an AVX2 x86-64 CPU and
    ``native`` MKL (x86-64); elsewhere only the CUDA part applies (recorded as ``off``)."""
    if policy == "portable" and not portable_available():
        return "native" if platform.machine().lower() in ("x86_64", "amd64") else "off"
    if policy == "native" and platform.machine().lower() not in ("x86_64", "amd64"):
        return "off"
    return policy


def apply(policy: str | None = None) -> str:
    """Set the environment for ``policy`` (default: :func:`requested`) so that the libraries
    start on it and child processes inherit it; returns the policy in effect. Call it before
    torch computes anything: a library that has already started keeps its paths (:func:`check`)."""
    policy = effective(check_policy(policy) if policy else requested())
    os.environ[ENV] = policy
    for key in _MANAGED + list(_CUBLAS):  # undo what bench set for another policy
        if key in _applied and os.environ.get(key) == _applied[key]:
            del os.environ[key]
            del _applied[key]
            if key in _replaced:  # the user's own value, back
                os.environ[key] = _replaced.pop(key)
    for key, value in {**_CPU_ENV[policy], **(_CUBLAS if policy != "off" else {})}.items():
        if os.environ.get(key) != value:
            if key in os.environ:
                _replaced[key] = os.environ[key]
            os.environ[key] = value
            _applied[key] = value
    if _applied:
        os.environ[MARK] = ";".join(f"{k}={v}" for k, v in sorted(_applied.items()))
    else:
        os.environ.pop(MARK, None)
    return policy


def apply_at_import() -> None:
    """:func:`apply` for ``import bench``: a bad ``BENCH_DETERMINISM`` sets nothing here (an
    import must not fail); ``bench run`` then stops on it with one line (exit 2)."""
    try:
        apply()
    except UsageError:
        pass


# --- reading what is in effect ----------------------------------------------------------------

# MKL's CNR codes (mkl_cbwr.h): branch in the low bits, 0x10000 the strict flag.
_MKL_BRANCHES = {1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1",
                 8: "SSE4_2", 9: "AVX", 10: "AVX2", 11: "AVX512_MIC", 12: "AVX512",
                 13: "AVX512_MIC_E1", 14: "AVX512_E1"}
_MKL_STRICT = 0x10000


def mkl_mode() -> str | None:
    """MKL's CNR mode as MKL itself reports it (``AVX2,STRICT``), or None where torch has no MKL
    to ask. Reading it starts MKL: call it after :func:`apply`."""
    import torch

    if not torch.backends.mkl.is_available():
        return None
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib",
                                       "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    code = get(-1)  # MKL_CBWR_ALL
    branch = _MKL_BRANCHES.get(code & 0xFFFF, str(code & 0xFFFF))
    return branch + (",STRICT" if code & _MKL_STRICT else "")


def _cpu_state() -> dict:
    import torch

    return {"mkl_cbwr": mkl_mode(), "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}


def check(policy: str) -> None:
    """Raise a BenchError when ``policy``'s CPU settings did not take effect: torch had computed
    before bench set them (a notebook that used torch before ``import bench``)."""
    want = _CPU_ENV[policy]
    state = _cpu_state()
    wrong = []
    if "MKL_CBWR" in want and state["mkl_cbwr"] is not None:
        branch = want["MKL_CBWR"].split(",")[0]
        if not state["mkl_cbwr"].endswith("STRICT") or (
                branch != "AUTO" and not state["mkl_cbwr"].startswith(branch)):
            wrong.append(f"MKL runs {state['mkl_cbwr']} where the policy needs {want['MKL_CBWR']}")
    if "ATEN_CPU_CAPABILITY" in want and state["aten_cpu_capability"].lower() != want[
            "ATEN_CPU_CAPABILITY"]:
        wrong.append(f"torch's kernels run {state['aten_cpu_capability']} where the policy "
                     f"needs {want['ATEN_CPU_CAPABILITY'].upper()}")
    if wrong:
        raise BenchError(
            f"the reproducibility policy {policy!r} did not take effect: {'; '.join(wrong)}. "
            f"torch computed before bench could set it up: import bench before running any "
            f"torch computation (in a notebook: restart the kernel and import bench first), "
            f"or run the same process with {ENV}={policy} set in its environment; "
            f"--determinism off runs without it (its results are labelled)")


def apply_torch(policy: str, device) -> None:
    """The CUDA part of ``policy`` (a no-op on a CPU): deterministic algorithms, cuDNN, TF32."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return
    on = policy != "off"
    if on:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def describe(policy: str, device, encode_threads: int) -> dict:
    """The ``determinism`` block of a result: the policy, what is in effect, the threads images
    are encoded with (bench.threads.encode_threads) and the CPU (fit threads are in the record's
    ``timings.fit_threads``)."""
    import torch

    block = {"policy": policy, **_cpu_state(), "encode_threads": encode_threads,
             "cpu": cpu_model()}
    if getattr(device, "type", str(device)) == "cuda":
        block["cuda"] = {
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}
    return block


def cpu_model() -> str:
    """The CPU's model name (for records: which machine made a number)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

