"""Every shim RecBole 1.2.1 needs on today's numpy / scipy / torch / ray, in one place.

Only version fixes live here, with the safety and noise settings that running RecBole on them needs:
none changes a result RecBole computes. This package's own evaluation choices are its own classes, built by its own
code (``recbole_mamex.data.loaders.FullSortLoader``, ``recbole_mamex.model.random_ranking.Random``,
the warm-item training sampler of ``recbole_mamex.data.negatives``); RecBole's classes stay as RecBole
has them (``tests/test_recbole_untouched.py``).

Importing :mod:`recbole_mamex.config` (every run's first step) calls :func:`apply_all` once; code that drives
RecBole without it calls :func:`apply_all` itself. Each shim is idempotent, names the
RecBole (or ray) code that needs it, and has a test in ``tests/test_compat.py`` (``ddp_on_cpu``:
``tests/test_distributed.py``; the shims that keep RecBole from unpickling a file:
``tests/test_untrusted_recbole_paths.py``) that exercises that code in a fresh process with the shim switched off (it
must fail) and on (it must work).

To check whether a shim is still needed after upgrading a dependency, switch it off with the
environment variable ``RECBOLE_MAMEX_DISABLE_SHIMS`` (comma-separated shim names, see ``SHIMS``).

Not shims but pins in ``setup.cfg`` (no code can fix them at run time):

- ``setuptools<81``: ray 2.6.3 imports ``pkg_resources``, which setuptools 82 removed;
  ``from ray import tune`` in ``recbole.quick_start`` would fail.
- ``pandas<3``: pandas 3's copy-on-write makes RecBole's in-place ``fillna`` silently do nothing.
"""

from __future__ import annotations

import os
import types
import warnings

import numpy as np

DISABLE_ENV = "RECBOLE_MAMEX_DISABLE_SHIMS"

# Names numpy 2 removed and RecBole 1.2.1 / ray 2.6.3 still use, with what they stood for.
# Config.compatibility_settings reads np.float_, np.complex_, np.unicode_; metrics.py, layers.py,
# abstract_recommender.py, ffm.py and hyper_tuning.py use np.float, np.bool, np.long, np.str;
# ray.tune's loggers use np.bool8.
_NUMPY_ALIASES = {
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "bool8": np.bool_,
    "float": float,
    "int": int,
    "bool": bool,
    "complex": complex,
    "object": object,
    "str": str,
    "unicode": str,
    "long": int,
}


def numpy_aliases() -> None:
    """Restore the numpy aliases RecBole and ray use, where this numpy no longer has them.

    Without it: ``recbole.config.Config()`` raises AttributeError (np.float_), and any process that
    evaluates without building a Config first (``load_data_and_model`` -> ``evaluate``) dies on
    ``np.float`` in ``recbole/evaluator/metrics.py``.
    """
    for name, value in _NUMPY_ALIASES.items():
        with warnings.catch_warnings():
            # numpy 2.x warns on np.object / np.str look-ups ("will be defined as the scalar type").
            warnings.simplefilter("ignore", FutureWarning)
            try:
                getattr(np, name)
            except AttributeError:
                setattr(np, name, value)


def scipy_dok_update() -> None:
    """Give scipy's dok_matrix back the ``_update`` method scipy 1.13 removed.

    LightGCN, NGCF, GCMC, SpectralCF, NCL, KGIN and MCCLK build their adjacency with
    ``A._update(data_dict)``. ``dict.update`` on the matrix's own storage gives bit-identical results.
    """
    import scipy.sparse as sp

    if hasattr(sp.dok_matrix, "_update"):
        return

    def _update(self, data):
        self._dict.update(data)

    sp.dok_matrix._update = _update


class _NoPickleNumpy(types.ModuleType):
    """Stands in for ``numpy`` inside a RecBole module that ``np.load``-s a dataset's file: every attribute is
    numpy's, except ``load``, which never unpickles (:func:`_load_without_pickles`)."""

    def __init__(self):
        super().__init__("numpy")
        self.load = _load_without_pickles

    def __getattr__(self, name):
        return getattr(np, name)


def _load_without_pickles(file, mmap_mode=None, allow_pickle=False, *args, **kwargs):
    """``np.load`` with ``allow_pickle=False`` whatever the caller asks; a file it cannot read that way (an
    object array, a pickle, not an array file, absent) is an :class:`~recbole_mamex.errors.InputFileError`."""
    from recbole_mamex.errors import InputFileError

    expected = "a numpy array file (.npy) of numbers"
    try:
        return np.load(file, mmap_mode, False, *args, **kwargs)
    except ValueError as err:  # numpy: "Object arrays cannot be loaded when allow_pickle=False", ...
        raise InputFileError(file, expected, f"one numpy reads only by unpickling, which can run code ({err})") from None
    except OSError as err:
        raise InputFileError(file, expected, err.strerror or str(err)) from None


# RecBole modules that np.load a file of the dataset's folder, and the file
_NUMPY_LOADING_MODULES = ("recbole.model.general_recommender.ldiffrec",)  # item_emb.npy when n_cate > 1


def numpy_load_no_pickles() -> None:
    """Make the ``np.load`` of RecBole's ``LDiffRec`` refuse pickles.

    ``recbole/model/general_recommender/ldiffrec.py`` reads ``<data_path>/<dataset>/item_emb.npy`` with
    ``np.load(..., allow_pickle=True)`` when ``n_cate > 1``: a pickled object array there runs code when the
    model is built. With this shim the modules in ``_NUMPY_LOADING_MODULES`` see, instead of ``numpy``, a
    stand-in whose ``load`` always passes ``allow_pickle=False``; a file numpy can read only by unpickling is
    one :class:`~recbole_mamex.errors.InputFileError` naming it. A plain float array loads as before.
    """
    import importlib

    for module_name in _NUMPY_LOADING_MODULES:
        module = importlib.import_module(module_name)
        if module.__dict__.get("np") is np:
            module.np = _NoPickleNumpy()


class _WeightsOnlyTorch(types.ModuleType):
    """Stands in for ``torch`` inside a RecBole module that ``torch.load``-s a pre-trained file named by the
    config: every attribute is torch's, except ``load``, whose refusals are one error line
    (:func:`_load_weights_only`)."""

    def __init__(self):
        import torch

        super().__init__("torch")
        self.load = _load_weights_only
        self._torch = torch

    def __getattr__(self, name):
        return getattr(self._torch, name)


def _weights_only_refusal(message: str) -> str:
    """What torch's weights-only unpickler refused, from its (many-line) ``UnpicklingError`` message."""
    import re

    match = re.search(r"GLOBAL (\S+) was not an allowed global", message)
    if match:
        return f"a pickle that refers to {match.group(1)}, which weights-only reading refuses (unpickling it could run code)"
    match = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", message)
    if match and match.group(1).startswith("Unsupported operand"):  # the first byte is no pickle opcode it reads
        return "a file torch.save did not write"
    if match:
        return f"a pickle weights-only reading refuses ({match.group(1).strip()})"
    lines = [line.strip() for line in message.replace("Weights only load failed.", "").splitlines() if line.strip()]
    return f"a file torch cannot read weights-only ({lines[0] if lines else 'no reason given'})"


def _load_weights_only(file, *args, **kwargs):
    """``torch.load``, under the process's forced weights-only reading (:func:`torch_load_weights_only`); a file
    it refuses (a pickle of anything but tensors and plain values), an empty, truncated or foreign one, or one
    that cannot be opened is an :class:`~recbole_mamex.errors.InputFileError` naming it."""
    import pickle
    import struct

    import torch

    from recbole_mamex.errors import InputFileError, os_error_text

    path = os.fspath(file) if isinstance(file, (str, os.PathLike)) else None
    expected = "a checkpoint of plain tensors and values (read weights-only)"
    try:
        return torch.load(file, *args, **kwargs)
    except pickle.UnpicklingError as err:
        raise InputFileError(path, expected, _weights_only_refusal(str(err))) from None
    except EOFError:
        raise InputFileError(path, expected, "an empty or truncated file") from None
    except OSError as err:
        raise InputFileError(path, expected, os_error_text(err)) from None
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, struct.error):
        # torch's legacy reader on a file torch.save did not write (a text or data file: its first bytes read
        # as pickle opcodes)
        raise InputFileError(path, expected, "a file torch.save did not write") from None
    except RuntimeError as err:  # a damaged checkpoint archive, a tensor of a device this machine lacks
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputFileError(path, expected, f"a file torch cannot read ({reason})") from None


# RecBole modules that torch.load a pre-trained file named by the config: NeuMF (mf_pretrain_path, mlp_pretrain_path), RaCT, S3Rec, ConvNCF
# (pre_model_path), NAIS (pretrain_path), KD_DAGFM (warm_up)
_TORCH_LOADING_MODULES = (
    "recbole.model.general_recommender.neumf",
    "recbole.model.general_recommender.ract",
    "recbole.model.general_recommender.convncf",
    "recbole.model.general_recommender.nais",
    "recbole.model.sequential_recommender.s3rec",
    "recbole.model.context_aware_recommender.kd_dagfm",
)


def torch_load_weights_only() -> None:
    """Keep every ``torch.load`` of the process at ``weights_only=True``, whatever the environment says, and
    make a pre-trained file it refuses one error line.

    RecBole's ``torch.load`` calls pass no ``weights_only`` (``trainer.py``'s ``resume_checkpoint`` and
    ``evaluate(load_best_model=True)``; the pre-trained checkpoints of ConvNCF, NAIS, NeuMF, RaCT and
    S3Rec; KD_DAGFM's ``warm_up``): torch >= 2.6 then reads plain values only, unless the environment sets
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``, which turns them into ``pickle.load`` of a path from the config.
    torch reads both variables at every ``torch.load`` (``torch/serialization.py``); this shim removes that
    one and sets ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` (inherited by worker processes). This package's own
    loads (checkpoints, the image encoder's weights) already pass ``weights_only=True``. The modules in
    ``_TORCH_LOADING_MODULES`` see, instead of ``torch``, a stand-in whose ``load`` turns torch's refusal (a
    many-line ``UnpicklingError``) into one :class:`~recbole_mamex.errors.InputFileError` naming the file
    and what it holds (e.g. the global the unpickler refused); a checkpoint of tensors loads as before.
    """
    import importlib

    import torch

    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    for module_name in _TORCH_LOADING_MODULES:
        module = importlib.import_module(module_name)
        if module.__dict__.get("torch") is torch:
            module.torch = _WeightsOnlyTorch()


def quiet_known_warnings() -> None:
    """Silence deprecation warnings RecBole 1.2.1 and ray trigger on every run and that a user cannot act
    on (``torch.cuda.amp.GradScaler``, ``torch.sparse.FloatTensor``, thop's LooseVersion, pandas'
    chained-assignment notice, ray's ``pkg_resources``), and torch's "beta" notice of the CSR layout."""
    warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.cuda\.amp\..*")
    warnings.filterwarnings("ignore", category=UserWarning, message=r".*torch\.sparse\.SparseTensor.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*LooseVersion.*")
    # RecBole's dataset.py fills missing values with chained in-place fillna: it works on pandas 2
    # (pinned <3, where it would silently do nothing) but warns on every load.
    warnings.filterwarnings(
        "ignore", category=FutureWarning, message=r"A value is trying to be set on a copy of a DataFrame.*"
    )
    # ray 2.6.3 imports pkg_resources (kept working by the setuptools<81 pin).
    warnings.filterwarnings("ignore", category=UserWarning, message=r"pkg_resources is deprecated.*")
    # torch calls its compressed-row sparse layout "beta" on every first use; RLMultimodalRec's graph is
    # one (recbole_mamex.model.graph.csr_adjacency), checked against the COO product by the tests.
    warnings.filterwarnings("ignore", category=UserWarning, message=r"Sparse CSR tensor support is in beta state.*")


def autograd_anomaly_off() -> None:
    """Switch off the autograd anomaly detection that RecBole's ``sequential_recommender/sine.py`` turns on
    for the whole process when it is imported (``torch.autograd.set_detect_anomaly(True)`` at module
    level). Any import of RecBole's sequential models (RecBole's ``get_model`` imports them to look a name
    up) triggers it; every backward pass then checks every gradient
    for NaN (measured: about 7% of a MAMEX training step on Amazon-Sports shapes). Anomaly detection is
    a debugging aid: turn it on yourself with ``torch.autograd.set_detect_anomaly(True)`` when needed."""
    import importlib

    import torch

    importlib.import_module("recbole.model.sequential_recommender")
    torch.autograd.set_detect_anomaly(False)


def _cpu_process_group(config: dict) -> bool:
    """Whether a distributed RecBole run with this final config dict runs on CPU: no CUDA device, or
    ``use_gpu: False``, or an empty ``gpu_id`` (RecBole's own rule for a single process, plus use_gpu)."""
    import torch

    return not torch.cuda.is_available() or not config.get("use_gpu", True) or config.get("gpu_id") in ("", None)


def ddp_on_cpu() -> None:
    """Let RecBole's multi-process (DDP) path run on CPU, with torch's ``gloo`` backend.

    RecBole 1.2.1 assumes a CUDA device per process: ``Config._init_device`` asserts one ``gpu_id`` per
    process, calls ``init_process_group(backend="nccl")`` and ``torch.cuda.set_device``, and
    ``AbstractTrainer.__init__`` wraps the model in ``DistributedDataParallel(device_ids=[local_rank])``,
    which torch refuses for a CPU module. With this shim, a process whose config sets ``local_rank`` (a
    distributed run) and has no usable GPU (see :func:`_cpu_process_group`) joins a gloo process group
    on ``tcp://ip:port`` with rank ``local_rank + offset`` on ``cpu``, and its trainer wraps the model
    without ``device_ids``. Runs with a GPU, and single-process runs, take RecBole's own code unchanged.
    """
    from recbole.config import configurator
    from recbole.trainer import trainer as trainer_module

    config_class = configurator.Config
    if not getattr(config_class._init_device, "recbole_mamex_shim", False):
        recbole_init_device = config_class._init_device

        def _init_device(self):
            config = self.final_config_dict
            if "local_rank" not in config or not _cpu_process_group(config):
                return recbole_init_device(self)
            import torch

            gpu_id = config["gpu_id"]
            config["gpu_id"] = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
            torch.distributed.init_process_group(
                backend="gloo",
                rank=config["local_rank"] + config["offset"],
                world_size=config["world_size"],
                init_method=f"tcp://{config['ip']}:{config['port']}",
            )
            config["device"] = torch.device("cpu")
            config["single_spec"] = False
            if config["local_rank"] != 0:  # as RecBole: only the first process logs
                config["state"] = "error"
                config["show_progress"] = False
                config["verbose"] = False

        _init_device.recbole_mamex_shim = True
        config_class._init_device = _init_device

    abstract_trainer = trainer_module.AbstractTrainer
    if not getattr(abstract_trainer.__init__, "recbole_mamex_shim", False):
        recbole_trainer_init = abstract_trainer.__init__

        def __init__(self, config, model):
            if config["single_spec"] or config["device"].type != "cpu":
                return recbole_trainer_init(self, config, model)
            import torch

            self.config = config
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            self.distributed_model = torch.nn.parallel.DistributedDataParallel(self.model)

        __init__.recbole_mamex_shim = True
        abstract_trainer.__init__ = __init__


# name -> shim, in the order they are applied (numpy before anything that imports RecBole).
SHIMS = {
    "quiet_known_warnings": quiet_known_warnings,
    "numpy_aliases": numpy_aliases,
    "scipy_dok_update": scipy_dok_update,
    "autograd_anomaly_off": autograd_anomaly_off,
    "ddp_on_cpu": ddp_on_cpu,
    "numpy_load_no_pickles": numpy_load_no_pickles,
    "torch_load_weights_only": torch_load_weights_only,
}

_applied: set[str] = set()


def disabled_shims() -> set[str]:
    """Shim names switched off through ``RECBOLE_MAMEX_DISABLE_SHIMS``; unknown names are an error."""
    raw = os.environ.get(DISABLE_ENV, "")
    names = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = names - set(SHIMS)
    if unknown:
        raise ValueError(
            f"{DISABLE_ENV}: unknown shim name(s) {sorted(unknown)}; expected some of {list(SHIMS)}"
        )
    return names


def apply_all() -> list[str]:
    """Apply every shim not yet applied and not disabled; return the names applied by this call."""
    skip = disabled_shims()
    done = []
    for name, shim in SHIMS.items():
        if name in _applied or name in skip:
            continue
        shim()
        _applied.add(name)
        done.append(name)
    return done


def applied_shims() -> list[str]:
    return [name for name in SHIMS if name in _applied]


__all__ = ["SHIMS", "DISABLE_ENV", "apply_all", "applied_shims", "disabled_shims"]
