#include "arrays.h"

#include "dlpack.h"

namespace tokenwire::py_adapters {

namespace {
std::string dtype_name(const dlpack::DataType& t) {
  const char* kind = t.code == dlpack::kDLFloat    ? "float"
                     : t.code == dlpack::kDLBfloat ? "bfloat"
                     : t.code == dlpack::kDLInt    ? "int"
                     : t.code == dlpack::kDLUInt   ? "uint"
                                                   : "type-code-";
  return kind + std::to_string(t.code > 4 ? t.code : t.bits) + (t.lanes != 1 ? "x" + std::to_string(t.lanes) : "");
}
}  // namespace

namespace {
// numpy arrays go through the buffer protocol (read-only arrays included, which legacy DLPack
// export refuses).
LogitsView numpy_view(const py::array& a, py::object& keepalive) {
  DType dtype;
  if (a.dtype().is(py::dtype::of<float>())) {
    dtype = DType::kFloat32;
  } else if (a.dtype().is(py::dtype("float16"))) {
    dtype = DType::kFloat16;
  } else {
    throw py::type_error("logits must be float32, bfloat16 or float16, got numpy " + std::string(py::str(a.dtype())) +
                         " (numpy has no bfloat16: pass a torch tensor)");
  }
  if (a.ndim() != 2) throw py::value_error("logits must be 2-D [rows, vocab], got " + std::to_string(a.ndim()) + "-D");
  const auto item = static_cast<py::ssize_t>(a.itemsize());
  if (a.shape(1) < 1) throw py::value_error("logits must have a vocabulary dimension >= 1");
  if (a.strides(1) != item && a.shape(1) > 1) {
    throw py::value_error("logits must be contiguous along the vocabulary (stride 1), got stride " +
                          std::to_string(a.strides(1) / item) + "; pass np.ascontiguousarray(logits)");
  }
  if (a.strides(0) < 0 || a.strides(0) % item != 0) {
    throw py::value_error("logits rows must be a non-negative whole number of elements apart");
  }
  keepalive = a;
  LogitsView v;
  v.data = a.data();
  v.dtype = dtype;
  v.rows = a.shape(0);
  v.vocab = a.shape(1);
  v.row_stride = a.strides(0) / item;
  return v;
}
}  // namespace

LogitsView logits_view(const py::handle& obj, py::object& keepalive) {
  if (py::isinstance<py::array>(obj)) return numpy_view(py::reinterpret_borrow<py::array>(obj), keepalive);
  if (!py::hasattr(obj, "__dlpack__")) {
    throw py::type_error("logits must be a numpy array or a torch CPU tensor (an object with __dlpack__), got " +
                         std::string(py::str(obj.get_type().attr("__name__"))));
  }
  keepalive = obj.attr("__dlpack__")();
  if (!PyCapsule_IsValid(keepalive.ptr(), "dltensor")) {
    throw py::type_error("logits.__dlpack__() did not return a DLPack capsule");
  }
  auto* managed = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(keepalive.ptr(), "dltensor"));
  const dlpack::Tensor& t = managed->dl_tensor;
  if (t.device.device_type != dlpack::kDLCPU) {
    throw py::value_error("logits must be in CPU memory, got DLPack device type " +
                          std::to_string(t.device.device_type) + " (copy it with .cpu() first)");
  }
  DType dtype;
  if (t.dtype.lanes == 1 && t.dtype.code == dlpack::kDLFloat && t.dtype.bits == 32) {
    dtype = DType::kFloat32;
  } else if (t.dtype.lanes == 1 && t.dtype.code == dlpack::kDLBfloat && t.dtype.bits == 16) {
    dtype = DType::kBFloat16;
  } else if (t.dtype.lanes == 1 && t.dtype.code == dlpack::kDLFloat && t.dtype.bits == 16) {
    dtype = DType::kFloat16;
  } else {
    throw py::type_error("logits must be float32, bfloat16 or float16, got " + dtype_name(t.dtype));
  }
  if (t.ndim != 2) {
    throw py::value_error("logits must be 2-D [rows, vocab], got " + std::to_string(t.ndim) + "-D");
  }
  const int64_t rows = t.shape[0], vocab = t.shape[1];
  if (vocab < 1) throw py::value_error("logits must have a vocabulary dimension >= 1");
  const int64_t col_stride = t.strides ? t.strides[1] : 1;
  const int64_t row_stride = t.strides ? t.strides[0] : vocab;
  if (col_stride != 1 && vocab > 1) {
    throw py::value_error("logits must be contiguous along the vocabulary (stride 1), got stride " +
                          std::to_string(col_stride) + "; pass .contiguous() / np.ascontiguousarray");
  }
  if (row_stride < 0) throw py::value_error("logits must not have a negative row stride");
  LogitsView v;
  v.data = static_cast<const char*>(t.data) + t.byte_offset;
  v.dtype = dtype;
  v.rows = rows;
  v.vocab = vocab;
  v.row_stride = row_stride;
  return v;
}

TokenMask token_mask(const py::handle& token_mask, const py::handle& mask_rows, int64_t rows) {
  TokenMask m;
  if (token_mask.is_none()) {
    if (!mask_rows.is_none()) throw py::value_error("mask_rows was given without a token_mask");
    return m;
  }
  if (!py::isinstance<py::array>(token_mask)) {
    throw py::type_error("token_mask must be a numpy int32 array [rows, words], got " +
                         std::string(py::str(token_mask.get_type().attr("__name__"))));
  }
  auto a = py::reinterpret_borrow<py::array>(token_mask);
  // xgrammar's bitmask dtype; the words are read as uint32 (same bits).
  if (!a.dtype().is(py::dtype::of<int32_t>())) {
    throw py::type_error("token_mask must have dtype int32 (xgrammar's token bitmask), got " +
                         std::string(py::str(a.dtype())));
  }
  if (a.ndim() != 2) {
    throw py::value_error("token_mask must be 2-D [rows, words], got " + std::to_string(a.ndim()) + "-D");
  }
  if (!(a.flags() & py::array::c_style)) throw py::value_error("token_mask must be C-contiguous");
  if (a.shape(0) != rows) {
    throw py::value_error("token_mask has " + std::to_string(a.shape(0)) + " rows, the logits have " +
                          std::to_string(rows));
  }
  m.bits = static_cast<const uint32_t*>(a.data());
  m.rows = a.shape(0);
  m.words = a.shape(1);
  if (!mask_rows.is_none()) {
    if (!py::isinstance<py::array>(mask_rows)) throw py::type_error("mask_rows must be a numpy bool array");
    auto r = py::reinterpret_borrow<py::array>(mask_rows);
    if (!r.dtype().is(py::dtype::of<bool>())) {
      throw py::type_error("mask_rows must have dtype bool, got " + std::string(py::str(r.dtype())));
    }
    if (r.ndim() != 1 || r.shape(0) != rows || !(r.flags() & py::array::c_style)) {
      throw py::value_error("mask_rows must be a contiguous 1-D array with one entry per logits row (" +
                            std::to_string(rows) + ")");
    }
    static_assert(sizeof(bool) == 1, "numpy bools are bytes");
    m.active = static_cast<const uint8_t*>(r.data());
  }
  return m;
}

}  // namespace tokenwire::py_adapters
