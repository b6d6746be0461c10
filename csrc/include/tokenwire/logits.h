// A read-only view of a [rows, vocab] logits matrix in caller memory (zero copy).
#pragma once

#include <cstdint>
#include <cstring>

namespace tokenwire {

enum class DType : int32_t { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };

// Element strides: the last dimension must be contiguous; rows may be any distance apart
// (row_stride 0 broadcasts one row), so `logits[:, -1, :]` of a model output needs no copy.
struct LogitsView {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;
  int64_t rows = 0;
  int64_t vocab = 0;
  int64_t row_stride = 0;
};

inline float bf16_to_float(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Branch-free IEEE half → float: rebias by multiplying with 2^112 (handles subnormals), then
// patch infinities and NaNs. Written so that loops over it vectorise.
inline float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  uint32_t bits = em << 13;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  f *= 0x1p112f;
  std::memcpy(&bits, &f, sizeof f);
  bits |= (em >= 0x7c00u) ? 0x7f800000u : 0u;
  bits |= sign;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// One row of a LogitsView, read as float.
class RowRef {
 public:
  RowRef(const LogitsView& v, int64_t row)
      : base_(static_cast<const char*>(v.data) + row * v.row_stride * elem_size(v.dtype)),
        dtype_(v.dtype) {}

  float at(int64_t i) const {
    switch (dtype_) {
      case DType::kFloat32: return reinterpret_cast<const float*>(base_)[i];
      case DType::kBFloat16: return bf16_to_float(reinterpret_cast<const uint16_t*>(base_)[i]);
      case DType::kFloat16: return f16_to_float(reinterpret_cast<const uint16_t*>(base_)[i]);
    }
    return 0.0f;
  }
  // The row itself when it is float32 (no conversion needed), else nullptr.
  const float* f32() const {
    return dtype_ == DType::kFloat32 ? reinterpret_cast<const float*>(base_) : nullptr;
  }
  // Converts [begin, begin + n) to float into `out`.
  void convert(int64_t begin, int64_t n, float* out) const;
  DType dtype() const { return dtype_; }

  static int64_t elem_size(DType d) { return d == DType::kFloat32 ? 4 : 2; }

 private:
  const char* base_;
  DType dtype_;
};

}  // namespace tokenwire
