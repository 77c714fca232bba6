"""Start-up settings of the app: model files and folders, the CIFAR-10 folder and trust.

The notebook reads these from marimo's CLI arguments (after ``--``), and the model list also
from an environment variable, so plain ``marimo run``/``marimo edit`` work as well as
``quantlens app``:

- ``--model=PATH`` (repeatable): a model file, or a folder whose model files are listed;
- ``--data-dir=DIR``: the CIFAR-10 folder (else ``$QUANTLENS_CIFAR10_DIR``, then the default
  cache folder, as everywhere in quantlens);
- ``--trust``: allow full unpickling of the given PyTorch files;
- ``$QUANTLENS_APP_MODELS``: more model files or folders, separated by ``os.pathsep``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MODELS_ENV = "QUANTLENS_APP_MODELS"
MODEL_ARG = "model"
DATA_DIR_ARG = "data-dir"
TRUST_ARG = "trust"


@dataclass(frozen=True)
class AppConfig:
    """The model paths the app may list and open, the CIFAR-10 folder and the trust flag.

    ``data_dir`` None means the dataset's default lookup. ``trust`` allows full unpickling of
    PyTorch files, which can run arbitrary code.
    """

    model_paths: tuple[Path, ...] = ()
    data_dir: Path | None = None
    trust: bool = False

    @classmethod
    def from_sources(cls, arguments: Mapping[str, object], environ: Mapping[str, str]) -> AppConfig:
        """Build the config from marimo CLI arguments (``mo.cli_args()``) and the environment."""
        paths = [Path(str(value)).expanduser() for value in _as_list(arguments.get(MODEL_ARG))]
        listed = environ.get(MODELS_ENV, "")
        paths.extend(Path(part).expanduser() for part in listed.split(os.pathsep) if part.strip())
        data_dir = arguments.get(DATA_DIR_ARG)
        return cls(
            model_paths=tuple(paths),
            data_dir=Path(str(data_dir)).expanduser() if data_dir not in (None, "") else None,
            trust=arguments.get(TRUST_ARG) is not None,
        )


def notebook_arguments(
    model_paths: Sequence[str | os.PathLike[str]], *, data_dir: str | os.PathLike[str] | None, trust: bool
) -> list[str]:
    """Return the arguments after ``--`` that give the notebook these settings.

    Paths are made absolute, because the marimo server may run in another working directory.
    """
    arguments = [f"--{MODEL_ARG}={Path(path).expanduser().resolve()}" for path in model_paths]
    if data_dir is not None:
        arguments.append(f"--{DATA_DIR_ARG}={Path(data_dir).expanduser().resolve()}")
    if trust:
        arguments.append(f"--{TRUST_ARG}")
    return arguments


def _as_list(value: object) -> list[object]:
    # mo.cli_args() returns one value for a single --model and a list for several.
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [item for item in value if item not in (None, "")]
    return [value]
