"""Save and load networks: an ``.npz`` of plain arrays plus a JSON header.

Never pickle: files are read with ``allow_pickle=False``, so a file that
holds pickled objects is refused instead of executed. Saving writes a
temporary file beside the target and renames it, so a crash never leaves a
half-written model.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "fastnet-network"
FORMAT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive


def save(net, path):
    path = os.fspath(path)
    header = {"format": FORMAT, "version": FORMAT_VERSION, "config": net.config(),
              "n_params": net.n_params}
    directory = os.path.dirname(os.path.abspath(path))
    try:
        handle, tmp = tempfile.mkstemp(dir=directory, prefix=".fastnet-", suffix=".npz")
    except OSError as error:
        raise OSError(f"cannot save the network to {path!r}: {error.strerror}") from error
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                     params=net.params)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path, backend="cpu"):
    """A Network from a file written by ``save``; clear errors for anything else."""
    from fastnet.network import Network
    path = os.fspath(path)
    with open(path, "rb") as file:
        if file.read(4) != ZIP_MAGIC:
            raise ValueError(f"{path!r} is not a readable fastnet network file (not an .npz "
                             "archive: truncated, damaged or foreign)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "header" not in archive.files or "params" not in archive.files:
                raise ValueError(f"{path!r} is not a fastnet network file (it holds "
                                 f"{sorted(archive.files)})")
            header = json.loads(archive["header"].tobytes().decode())
            params = archive["params"]
    except (zipfile.BadZipFile, EOFError, OSError, UnicodeDecodeError,
            json.JSONDecodeError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path!r} is not a readable fastnet network file (damaged or "
                         f"foreign): {error}") from error
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise ValueError(f"{path!r} holds pickled objects; fastnet files never do, "
                             "and it will not be unpickled") from error
        raise
    _check_header(path, header, params)
    net = Network(**header["config"], backend=backend)
    net.params[:] = params
    return net


def _check_header(path, header, params):
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a fastnet network file (format "
                         f"{header.get('format') if isinstance(header, dict) else None!r})")
    version = header.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path!r} was written by a newer fastnet (file format version "
                         f"{version!r}, this fastnet reads up to {FORMAT_VERSION})")
    if params.ndim != 1 or params.size != header.get("n_params"):
        raise ValueError(f"{path!r} is damaged: {params.size} parameters stored, header says "
                         f"{header.get('n_params')}")
