"""Loss landscapes of a network: planes and lines through its parameter vector.

H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss
Landscape of Neural Nets", NeurIPS 2018: the loss on the plane
theta* + a d1 + b d2 through trained parameters theta*, along random
directions normalised filter by filter (their section 4), or along the top
two principal directions of an optimisation trajectory (their section 7).
I. Goodfellow, O. Vinyals, A. Saxe, "Qualitatively characterizing neural
network optimization problems", ICLR 2015: the loss along the straight line
from the initial to the final parameters.

Every grid of points is evaluated by ``Network.population_loss``: one
compiled call for the whole grid (a few for a grid too large for memory).
"""
import numpy as np

from fastnet._checks import check_finite, check_matrix

#: one population_loss call evaluates at most this many parameter values
#: (2**24 float32 values are 64 MiB); a larger grid is cut into chunks
MAX_VALUES_PER_CALL = 2 ** 24
#: Li et al.'s guard against a zero-norm random filter: d * ||theta|| / (||d|| + EPS)
EPS = 1e-10


# ---------------------------------------------------------------- checks
def _vector(argument, value, length):
    """``value`` as a finite float64 vector of ``length`` values."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must be a vector of real numbers, got dtype {array.dtype}")
    if array.shape != (length,):
        raise ValueError(f"{argument} must have shape ({length},) (one value per parameter), "
                         f"got {array.shape}")
    array = array.astype(np.float64)
    check_finite(argument, array)
    return array


def _grid(argument, value):
    """``value`` as a non-empty, finite 1-D float64 array of coefficients."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must be real numbers, got dtype {array.dtype}")
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{argument} must be a non-empty 1-D array of coefficients, got "
                         f"shape {array.shape}")
    array = array.astype(np.float64)
    check_finite(argument, array)
    return array


def _directions(d1, d2, length):
    """``d1``, ``d2`` checked, and the (length, 2) matrix of them (linearly independent)."""
    d1, d2 = _vector("d1", d1, length), _vector("d2", d2, length)
    basis = np.column_stack([d1, d2])
    singular = np.linalg.svd(basis, compute_uv=False)
    if singular[-1] <= 1e-12 * max(singular[0], 1e-300):
        raise ValueError("d1 and d2 must span a plane (non-zero and not parallel), got "
                         f"singular values {singular.tolist()}")
    return d1, d2, basis


def _trajectory(argument, value, length):
    return check_matrix(argument, value, np.float64, length,
                        "columns (one per parameter, as many as center has)")


# ---------------------------------------------------------------- directions
def filter_normalized_direction(net, params, rng):
    """A random direction shaped like ``params``, normalised filter by filter.

    Each entry of every weight matrix W (fan_in x fan_out) is drawn from
    N(0, 1); then each column, the incoming weights of one unit (the
    "filter" of a dense layer), is rescaled to the norm of the same column
    of ``params`` (Li et al. 2018, section 4: d_ij <- d_ij ||theta_ij|| / ||d_ij||).
    Biases, and batch normalisation's gamma and beta, are left at 0: the
    authors' code does this for every one-dimensional parameter
    (``ignore='biasbn'``, the default of its ``create_random_direction``),
    so the plane moves only the weights, whose scale the normalisation fixes.
    ``rng``: a ``numpy.random.Generator`` or a seed. Returns float64.
    """
    params = _vector("params", params, net.n_params)
    rng = np.random.default_rng(rng)
    direction = np.zeros(net.n_params)
    for direction_layer, params_layer in zip(net.unflatten(direction), net.unflatten(params)):
        weights, target = direction_layer[0], params_layer[0]
        weights[...] = rng.standard_normal(weights.shape)
        weights *= np.linalg.norm(target, axis=0) / (np.linalg.norm(weights, axis=0) + EPS)
    return direction


def pca_directions(trajectories, center):
    """(d1, d2, explained variance ratios) of the offsets of ``trajectories`` from ``center``.

    ``trajectories``: one (T, D) matrix or a list of them (rows: parameter
    vectors along a run), concatenated. As in Li et al. 2018, section 7, the
    directions are the top two principal components of the matrix of offsets
    theta_t - center (centred on their mean, as the authors' scikit-learn PCA
    does); they are orthonormal. The ratios are each component's share of
    the offsets' total variance.
    """
    if isinstance(trajectories, (list, tuple)):
        if not trajectories:
            raise ValueError("trajectories must hold at least one (T, D) matrix, got an empty list")
        trajectories = [np.asarray(t) for t in trajectories]
        widths = {t.shape[1:] for t in trajectories}
        if len(widths) != 1 or any(t.ndim != 2 for t in trajectories):
            raise ValueError("trajectories must be (T, D) matrices with the same D, got shapes "
                             f"{[t.shape for t in trajectories]}")
        trajectories = np.concatenate(trajectories)
    center = np.asarray(center)
    center = _vector("center", center, center.size)
    offsets = _trajectory("trajectories", trajectories, center.size) - center
    if len(offsets) < 3:
        raise ValueError(f"trajectories must hold at least 3 points to define 2 principal "
                         f"directions, got {len(offsets)}")
    offsets -= offsets.mean(axis=0)
    _, singular, right = np.linalg.svd(offsets, full_matrices=False)
    variance = singular ** 2
    if variance[1] <= 1e-24 * max(variance[0], 1e-300):
        raise ValueError("the trajectories' offsets from center span fewer than 2 dimensions: "
                         "there is no principal plane")
    return right[0].copy(), right[1].copy(), variance[:2] / variance.sum()


def project(trajectory, center, d1, d2):
    """Coordinates (a, b) of each theta_t - center in span(d1, d2), and its in-plane fraction.

    The coordinates are least squares, min ||theta_t - center - a d1 - b d2||
    (exact for directions that are not orthogonal). The fraction is
    ||a d1 + b d2|| / ||theta_t - center|| (NaN where theta_t = center): a
    random plane in D dimensions holds about sqrt(2 / D) of a fixed offset.
    Returns ``(coordinates (T, 2), fractions (T,))``.
    """
    center = np.asarray(center)
    center = _vector("center", center, center.size)
    _, _, basis = _directions(d1, d2, center.size)
    trajectory = _trajectory("trajectory", trajectory, center.size)
    offsets = trajectory - center
    coordinates = np.linalg.lstsq(basis, offsets.T, rcond=None)[0].T
    distance = np.linalg.norm(offsets, axis=1)
    in_plane = np.linalg.norm(coordinates @ basis.T, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = np.where(distance > 0, in_plane / distance, np.nan)
    return coordinates, fractions


# ---------------------------------------------------------------- losses
def _losses(net, thetas, X, y):
    """Losses of the rows of ``thetas``, in as few population_loss calls as memory allows."""
    rows = max(1, MAX_VALUES_PER_CALL // net.n_params)
    return np.concatenate([net.population_loss(thetas[start:start + rows], X, y)
                           for start in range(0, len(thetas), rows)]).astype(np.float64)


def plane_losses(net, center, d1, d2, X, y, alphas, betas):
    """Loss at center + alphas[i] d1 + betas[j] d2, as a (len(alphas), len(betas)) matrix."""
    center = _vector("center", center, net.n_params)
    d1, d2, _ = _directions(d1, d2, net.n_params)
    alphas, betas = _grid("alphas", alphas), _grid("betas", betas)
    a, b = np.meshgrid(alphas, betas, indexing="ij")
    thetas = center + a.reshape(-1, 1) * d1 + b.reshape(-1, 1) * d2
    return _losses(net, thetas, X, y).reshape(a.shape)


def interpolate(net, start, end, X, y, alphas):
    """Loss at (1 - a) start + a end for each a in ``alphas`` (Goodfellow et al. 2015)."""
    start = _vector("start", start, net.n_params)
    end = _vector("end", end, net.n_params)
    alphas = _grid("alphas", alphas)
    thetas = (1 - alphas)[:, None] * start + alphas[:, None] * end
    return _losses(net, thetas, X, y)
