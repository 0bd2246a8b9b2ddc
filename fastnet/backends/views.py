"""Views of C-contiguous buffers, and scratch vectors on the stack, for the
CPU kernels, which allocate nothing.

Numba's ``reshape`` calls a C helper on every call (``numba_attempt_nocopy_
reshape``, measured as 7% of a 2-8-1 training step) to prove that the new
shape needs no copy. A slice of a C-contiguous buffer never does, so the
kernels build their views directly.
"""
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array


@intrinsic
def contiguous_view(typingctx, buffer, start, shape):
    """The C-contiguous array of ``shape`` whose first element is
    ``buffer.flat[start]`` (unchecked: the caller keeps it inside ``buffer``)."""
    if not (isinstance(buffer, types.Array) and buffer.layout == "C"
            and isinstance(shape, types.BaseTuple)
            and all(isinstance(extent, types.Integer) for extent in shape.types)):
        return None
    view_type = buffer.copy(ndim=len(shape), layout="C")
    sig = view_type(buffer, start, shape)

    def codegen(context, builder, signature, args):
        source = make_array(buffer)(context, builder, args[0])
        view = make_array(view_type)(context, builder)
        intp = types.intp
        extents = [context.cast(builder, extent, extent_type, intp) for extent, extent_type
                   in zip(cgutils.unpack_tuple(builder, args[2]), shape.types)]
        itemsize = context.get_constant(intp, context.get_abi_sizeof(
            context.get_data_type(buffer.dtype)))
        strides = [itemsize]
        for extent in reversed(extents[1:]):
            strides.insert(0, builder.mul(strides[0], extent))
        offset = context.cast(builder, args[1], signature.args[1], intp)
        populate_array(view, data=builder.gep(source.data, [offset]),
                       shape=cgutils.pack_array(builder, extents),
                       strides=cgutils.pack_array(builder, strides),
                       itemsize=itemsize, meminfo=source.meminfo, parent=source.parent)
        return impl_ret_borrowed(context, builder, view_type, view._getvalue())

    return sig, codegen


@intrinsic
def stack_vector(typingctx, like, length):
    """A vector of ``length`` (a compile-time constant) elements of like's
    dtype on the stack of the function it is inlined into: scratch space in
    kernels that allocate nothing. Uninitialised; it must not outlive that
    function."""
    if not (isinstance(like, types.Array) and isinstance(length, types.IntegerLiteral)):
        return None
    vector_type = types.Array(like.dtype, 1, "C")
    sig = vector_type(like, length)

    def codegen(context, builder, signature, args):
        intp = types.intp
        element = context.get_data_type(like.dtype)
        data = cgutils.alloca_once(builder, element, size=length.literal_value)
        vector = make_array(vector_type)(context, builder)
        itemsize = context.get_constant(intp, context.get_abi_sizeof(element))
        populate_array(vector, data=data,
                       shape=cgutils.pack_array(builder, [context.get_constant(
                           intp, length.literal_value)]),
                       strides=cgutils.pack_array(builder, [itemsize]),
                       itemsize=itemsize, meminfo=None, parent=None)
        return vector._getvalue()

    return sig, codegen
