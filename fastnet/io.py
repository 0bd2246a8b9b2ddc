"""Save and load networks: an ``.npz`` of plain arrays plus a JSON header.

Never pickle: files are read with ``allow_pickle=False``, so a file that
holds pickled objects is refused instead of executed. Saving writes a
temporary file beside the target and renames it, so a crash never leaves a
half-written model. The file handling is ``checkpoint.write`` / ``read``,
shared with training checkpoints. A network with batch normalisation also
stores its running statistics (``running_stats``).
"""
import os

from fastnet import checkpoint

FORMAT = "fastnet network"
FORMAT_VERSION = 1


def save(net, path):
    path = os.fspath(path)
    header = {"format": FORMAT, "version": FORMAT_VERSION, "config": net.config(),
              "n_params": net.n_params}
    arrays = {"params": net.params}
    if any(net.batch_norm):
        arrays["running_stats"] = net.running_stats
    checkpoint.write(path, header, arrays)


def load(path, backend="cpu"):
    """A Network from a file written by ``save``; clear errors for anything else."""
    from fastnet.network import Network
    path = os.fspath(path)
    header, arrays = checkpoint.read(path, FORMAT, FORMAT_VERSION)
    params = arrays.get("params")
    if params is None or params.ndim != 1 or params.size != header.get("n_params"):
        stored = None if params is None else params.size
        raise ValueError(f"{path!r} is damaged: {stored} parameters stored, header says "
                         f"{header.get('n_params')}")
    net = Network(**header["config"], backend=backend)
    net.params[:] = params
    if any(net.batch_norm):
        stats = arrays.get("running_stats")
        if stats is None or stats.shape != net.running_stats.shape:
            stored = None if stats is None else stats.shape
            raise ValueError(f"{path!r} is damaged: its batch normalisation's running "
                             f"statistics have shape {stored}, expected "
                             f"{net.running_stats.shape}")
        net.running_stats = stats
    return net
