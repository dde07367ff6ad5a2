"""Other libraries' tensors: DLPack inputs zero-copy on the CPU, moved once from
another device, bfloat16 accepted exactly, and gpunn errors naming the type and the
fix for tensors that require grad and for sparse matrices. Torch tests skip when
torch is missing."""

import numpy as np
import pytest

import gpunn
from gpunn import inputs
from gpunn.errors import ArgumentTypeError
from gpunn.layers import Dense

CPU = gpunn.get_backend("cpu")


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 4)).astype(np.float32), y


def make(seed=0):
    model = gpunn.Sequential(
        [Dense(8, activation="relu"), Dense(3)], seed=seed, backend="cpu"
    )
    model.compile("softmax_cross_entropy", gpunn.optim.Adam(0.01))
    return model


class HostTensor:
    """A minimal DLPack producer in host memory (no ``__array__``)."""

    def __init__(self, array):
        self.array = array

    def __dlpack_device__(self):
        return (1, 0)

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)


class DeviceTensor:
    """A DLPack producer on a (pretend) CUDA device that copies to the host only when
    asked for ``dl_device=(CPU, 0)``, counting the copies."""

    copies = 0

    def __init__(self, array):
        self.array = array

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        if dl_device is None or tuple(dl_device) != (1, 0):
            raise BufferError("this tensor lives on the GPU")
        DeviceTensor.copies += 1
        return self.array.copy().__dlpack__(max_version=max_version)


def test_a_dlpack_tensor_in_host_memory_is_used_zero_copy():
    X, _ = data()
    found = inputs.features(CPU, HostTensor(X), np.float32, None)
    assert np.shares_memory(found, X)
    np.testing.assert_array_equal(found, X)


def test_a_device_tensor_is_moved_to_the_cpu_once():
    X, y = data()
    DeviceTensor.copies = 0
    model, reference = make(), make()
    model.fit(DeviceTensor(X), y, epochs=2, batch_size=8, verbose=0)
    assert DeviceTensor.copies == 1
    reference.fit(X, y, epochs=2, batch_size=8, verbose=0)
    np.testing.assert_array_equal(model.get_weights()[0], reference.get_weights()[0])
    np.testing.assert_array_equal(model.predict(DeviceTensor(X)), model.predict(X))


def test_an_unreadable_dlpack_object_is_a_type_error_naming_it():
    class Broken(HostTensor):
        def __dlpack__(self, **kwargs):
            raise BufferError("no")

    with pytest.raises(ArgumentTypeError, match=r"X: cannot read this Broken"):
        make().predict(Broken(data()[0]))


def test_scipy_sparse_is_refused_with_the_fix():
    sparse = pytest.importorskip("scipy.sparse")
    X, y = data()
    with pytest.raises(ArgumentTypeError, match=r"sparse csr_matrix.*X\.toarray\(\)"):
        make().fit(sparse.csr_matrix(X), y, verbose=0)
    with pytest.raises(ArgumentTypeError, match=r"sparse .*y\.toarray\(\)"):
        make().fit(X, sparse.csr_array(y[:, None]), verbose=0)


def test_ml_dtypes_bfloat16_is_accepted_and_widened_exactly():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    X, y = data()
    half = X.astype(ml_dtypes.bfloat16)
    exact = half.astype(np.float32)
    model = make()
    model.fit(X, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.predict(half), model.predict(exact))
    np.testing.assert_array_equal(model(half[:, ::-1]), model(exact[:, ::-1]))


# ------------------------------------------------------------------ PyTorch
@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def test_torch_tensors_train_like_numpy_and_share_memory(torch):
    X, y = data()
    tx, ty = torch.from_numpy(X), torch.from_numpy(y)
    assert np.shares_memory(inputs.features(CPU, tx, np.float32, None), X)
    a, b = make(), make()
    a.fit(tx, ty, epochs=2, batch_size=8, verbose=0, validation_data=(tx, ty))
    b.fit(X, y, epochs=2, batch_size=8, verbose=0, validation_data=(X, y))
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)
    assert a.evaluate(tx, ty) == b.evaluate(X, y)
    np.testing.assert_array_equal(a.predict(tx.double()), b.predict(X))


def test_torch_bfloat16_is_accepted_and_widened_exactly(torch):
    X, y = data()
    half = torch.from_numpy(X).to(torch.bfloat16)
    model = make()
    model.fit(half, y, epochs=1, batch_size=8, verbose=0)
    reference = make()
    reference.fit(half.float().numpy(), y, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_array_equal(model.get_weights()[0], reference.get_weights()[0])
    strided = half.T.contiguous().T  # column-major strides
    np.testing.assert_array_equal(model.predict(strided), model.predict(half))


def test_torch_tensor_requiring_grad_is_refused_with_the_fix(torch):
    X, y = data()
    tx = torch.from_numpy(X).requires_grad_(True)
    with pytest.raises(ArgumentTypeError, match=r"requires grad.*X\.detach\(\)"):
        make().fit(tx, y, verbose=0)
    with pytest.raises(TypeError, match=r"x\.detach\(\)"):
        make()(tx)
    model = make()
    model.fit(tx.detach(), y, verbose=0)


def test_torch_sparse_is_refused_with_the_fix(torch):
    X, y = data()
    with pytest.raises(ArgumentTypeError, match=r"sparse Tensor.*X\.to_dense\(\)"):
        make().fit(torch.from_numpy(X).to_sparse(), y, verbose=0)


def test_a_torch_dataloader_is_an_iterable_of_batches(torch):
    X, y = data()
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=False)
    a, b = make(), make()
    a.fit(loader, epochs=2, verbose=0)
    b.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_a_device_tensor_its_library_cannot_copy_says_how_to_move_it():
    class Stuck(DeviceTensor):
        def __dlpack__(self, **kwargs):
            raise BufferError("no copies")

    with pytest.raises(ArgumentTypeError, match=r"DLPack device \(2, 0\).*x\.cpu\(\)"):
        make().predict(Stuck(data()[0]))


@pytest.mark.gpu
def test_a_cupy_array_is_used_zero_copy_by_a_gpu_model_and_moved_once_to_a_cpu_one():
    from conftest import gpu_skip_reason

    if gpu_skip_reason():
        pytest.skip(f"GPU backend not usable: {gpu_skip_reason()}")
    import cupy

    X, y = data()
    on_gpu = cupy.asarray(X)
    gpu = gpunn.get_backend("gpu")
    found = inputs.features(gpu, on_gpu, np.float32, None)
    assert found.data.ptr == on_gpu.data.ptr  # zero-copy
    host = inputs.features(CPU, on_gpu, np.float32, None)  # moved once, by DLPack
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, X)
    model = gpunn.Sequential(
        [Dense(8, activation="relu"), Dense(3)], seed=0, backend="gpu"
    )
    model.compile("softmax_cross_entropy", gpunn.optim.Adam(0.01))
    model.fit(on_gpu, cupy.asarray(y), epochs=1, batch_size=8, verbose=0)
    np.testing.assert_allclose(model(on_gpu), model.predict(X), rtol=1e-6)
