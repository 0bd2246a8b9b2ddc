"""Compile the shared per-element mathematics for one target.

``activations`` and ``losses`` hold plain Python functions that call each
other by name. ``compile_for(jit)`` compiles them in dependency order, each
one seeing the already-compiled versions of the functions it calls, so the
CPU and the GPU run the very same source.
"""
import types

from fastnet import activations, dropout, losses, updates

# In dependency order: a function may call only those listed before it.
SHARED_FUNCTIONS = (
    activations.exp_nonpositive,
    activations.tanh,
    activations.expm1,
    activations.log1p_nonnegative,
    activations.sigmoid,
    activations.sigmoid_derivative,
    activations.tanh_derivative,
    activations.relu,
    activations.relu_derivative,
    activations.leaky_relu,
    activations.leaky_relu_derivative,
    activations.elu,
    activations.elu_derivative,
    activations.softplus,
    activations.softplus_derivative,
    activations.heaviside,
    activations.heaviside_derivative,
    activations.activate,
    activations.derivative,
    activations.activate_row,
    activations.scale_by_derivative_row,
    losses.denominator,
    losses.row_max,
    losses.softmax_row,
    losses.output_activate,
    losses.row_loss,
    losses.softmax_row_loss,
    losses.row_delta,
    losses.row_correct,
    updates.update_rules,
    updates.updated,
    dropout.splitmix64,
    dropout.dropout_keeps,
)


#: Inlined where the target offers it (``loop_jit``): the functions the
#: backends' loops call once per row or per block, and the one-activation
#: functions that ``activate_row`` and ``scale_by_derivative_row`` call per
#: element. The others are called per element, or once per step.
INLINED_FUNCTIONS = (
    "relu", "leaky_relu", "elu", "softplus", "heaviside", "sigmoid_derivative",
    "tanh_derivative", "relu_derivative", "leaky_relu_derivative", "elu_derivative",
    "softplus_derivative", "heaviside_derivative", "activate_row", "scale_by_derivative_row",
    "denominator", "row_max", "softmax_row", "output_activate", "row_loss", "softmax_row_loss",
    "row_delta", "row_correct")


def compile_for(jit, replacements=None, loop_jit=None):
    """Return a namespace of ``SHARED_FUNCTIONS`` compiled with ``jit``, those in
    ``INLINED_FUNCTIONS`` with ``loop_jit`` where given; ``replacements`` maps a
    function's name to the target's own version."""
    compiled = dict(replacements or {})
    for function in SHARED_FUNCTIONS:
        if function.__name__ in compiled:
            continue
        rebound = types.FunctionType(
            function.__code__, {**function.__globals__, **compiled},
            function.__name__, function.__defaults__, function.__closure__)
        compile_one = loop_jit if loop_jit and function.__name__ in INLINED_FUNCTIONS else jit
        compiled[function.__name__] = compile_one(rebound)
    return types.SimpleNamespace(**compiled)
