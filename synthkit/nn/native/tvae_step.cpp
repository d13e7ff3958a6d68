// TVAE's written-out training step (synthkit/generators/tabular/tvae_step.py) as one native call.
//
// The same products, in the same dtypes, as the Python step; what differs is the glue: the
// elementwise work between the products (reparameterisation, the loss and its gradient with
// respect to the outputs, ReLU's backward with the cast into the products' dtype, the heads'
// gradients) runs as a few fused row loops instead of ~80 small tensor ops, and one call from
// Python replaces ~95 (each with its argument parsing). Built on the user's machine
// (synthkit.nn.native), with the GIL released for the whole step.
// ATen's vector types, for the instructions this machine has (built with -march=native)
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#define CPU_CAPABILITY_AVX512
#define CPU_CAPABILITY AVX512
#elif defined(__AVX2__) && defined(__FMA__)
#define CPU_CAPABILITY_AVX2
#define CPU_CAPABILITY AVX2
#else
#define CPU_CAPABILITY DEFAULT
#endif

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <type_traits>

#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;
using Vec = at::vec::Vectorized<float>;
constexpr int64_t kLanes = Vec::size();

// Rows per chunk of the row loops' parallel_for: a training batch of 500 rows splits in a few.
constexpr int64_t kGrain = 128;

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, bool relu, bool fused) {
  if (fused) {  // oneDNN's bf16 linear with the ReLU fused (synthkit.nn.precision.linear)
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                         .typed<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&,
                                       c10::string_view, c10::List<std::optional<at::Scalar>>,
                                       std::optional<c10::string_view>)>();
    c10::List<std::optional<at::Scalar>> scalars;
    if (relu) scalars.push_back(std::nullopt);
    return op.call(x, w, b, relu ? "relu" : "none", scalars, c10::string_view(""));
  }
  Tensor out = at::linear(x, w, b);
  return relu ? out.relu_() : out;
}

// Up to Vec::size() values at `p` as fp32 lanes (`count` of them; the rest zero), and back.
template <typename L>
inline Vec load(const L* p, int64_t count = kLanes) {
  if constexpr (std::is_same_v<L, float>) {
    return count == kLanes ? Vec::loadu(p) : Vec::loadu(p, count);
  } else {
    __at_align__ float buffer[kLanes] = {};
    for (int64_t k = 0; k < count; ++k) buffer[k] = static_cast<float>(p[k]);
    return Vec::loadu(buffer);
  }
}

template <typename L>
inline void store(L* p, const Vec& v, int64_t count = kLanes) {
  if constexpr (std::is_same_v<L, float>) {
    if (count == kLanes) {
      v.store(p);
    } else {
      v.store(p, count);
    }
  } else {
    __at_align__ float buffer[kLanes];
    v.store(buffer);
    for (int64_t k = 0; k < count; ++k) p[k] = static_cast<L>(buffer[k]);
  }
}

inline float lane_sum(const Vec& v) {
  __at_align__ float buffer[kLanes];
  v.store(buffer);
  float sum = 0.f;
  for (int64_t k = 0; k < kLanes; ++k) sum += buffer[k];
  return sum;
}

// mu and std (fp32), z = mu + eps * std in the products' dtype, and each row's
// sum of (logvar - mu^2 - std^2) for the KL term.
template <typename L>
void reparameterise(const Tensor& heads, const Tensor& eps, Tensor& mu, Tensor& sd, Tensor& z,
                    Tensor& row_kl) {
  const int64_t rows = eps.size(0), code = eps.size(1);
  const L* hp = heads.data_ptr<L>();
  const float* ep = eps.data_ptr<float>();
  float* mp = mu.data_ptr<float>();
  float* sp = sd.data_ptr<float>();
  L* zp = z.data_ptr<L>();
  float* kp = row_kl.data_ptr<float>();
  const Vec half(0.5f);
  at::parallel_for(0, rows, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const L* hm = hp + r * 2 * code;
      const L* hl = hm + code;
      const int64_t o = r * code;
      Vec acc(0.f);
      for (int64_t j = 0; j < code; j += kLanes) {
        const int64_t n = std::min(kLanes, code - j);
        const Vec m = load(hm + j, n), lv = load(hl + j, n);
        const Vec s = (lv * half).exp();
        store(mp + o + j, m, n);
        store(sp + o + j, s, n);
        store(zp + o + j, at::vec::fmadd(load(ep + o + j, n), s, m), n);
        acc = acc + (lv - m * m - s * s);  // zero lanes past `n` add 0 - 0 - 1: taken off below
      }
      const int64_t padded = (code + kLanes - 1) / kLanes * kLanes;
      kp[r] = lane_sum(acc) + static_cast<float>(padded - code);
    }
  });
}

// The loss's gradient with respect to the decoder's outputs (fp32), times `scale`:
// alpha values (tanh(r) - t)(1 - tanh^2(r)) / sigma^2, one-hot slots softmax(block) - target.
// Also each alpha value's squared error (for sigma's gradient and the loss) and each row's
// cross-entropy summed over its blocks.
void output_gradient(const Tensor& raw, const Tensor& batch, const Tensor& sigma,
                     const std::vector<int64_t>& widths, int64_t n_alpha, float scale,
                     Tensor& grad_raw, Tensor& sq_err, Tensor& row_ce) {
  const int64_t rows = raw.size(0), width = raw.size(1);
  const int64_t n_blocks = static_cast<int64_t>(widths.size());
  const float* rp = raw.data_ptr<float>();
  const float* tp = batch.data_ptr<float>();
  float* gp = grad_raw.data_ptr<float>();
  float* qp = sq_err.data_ptr<float>();
  float* cp = row_ce.data_ptr<float>();
  std::vector<float> alpha_scale(n_alpha);
  const float* sg = sigma.data_ptr<float>();
  for (int64_t j = 0; j < n_alpha; ++j) alpha_scale[j] = scale / (sg[j] * sg[j]);
  const float* as = alpha_scale.data();
  const int64_t n_slots = width - n_alpha;
  const Vec one(1.f), vscale(scale);
  at::parallel_for(0, rows, kGrain, [&](int64_t begin, int64_t end) {
    std::vector<float> shift(n_slots), inverse(n_slots), sums(n_blocks), maxima(n_blocks);
    for (int64_t r = begin; r < end; ++r) {
      const float* rr = rp + r * width;
      const float* tr = tp + r * width;
      float* gr = gp + r * width;
      float* qr = qp + r * n_alpha;
      for (int64_t j = 0; j < n_alpha; j += kLanes) {
        const int64_t n = std::min(kLanes, n_alpha - j);
        const Vec t = load(rr + j, n).tanh();
        const Vec diff = t - load(tr + j, n);
        store(qr + j, diff * diff, n);
        store(gr + j, diff * (one - t * t) * load(as + j, n), n);
      }
      if (!n_blocks) {
        cp[r] = 0.f;
        continue;
      }
      // one-hot blocks: each block's maximum (a shift for stability) spread over its slots
      const float* logits = rr + n_alpha;
      const float* hot = tr + n_alpha;
      float* grad = gr + n_alpha;
      int64_t at = 0;
      for (int64_t b = 0; b < n_blocks; ++b) {
        const int64_t w = widths[b];
        float m = logits[at];
        for (int64_t k = 1; k < w; ++k) m = std::max(m, logits[at + k]);
        for (int64_t k = 0; k < w; ++k) shift[at + k] = m;
        maxima[b] = m;
        at += w;
      }
      Vec picked(0.f);
      for (int64_t k = 0; k < n_slots; k += kLanes) {
        const int64_t n = std::min(kLanes, n_slots - k);
        const Vec x = load(logits + k, n);
        store(grad + k, (x - load(shift.data() + k, n)).exp(), n);
        picked = at::vec::fmadd(x, load(hot + k, n), picked);
      }
      at = 0;
      for (int64_t b = 0; b < n_blocks; ++b) {
        float sum = 0.f;
        for (int64_t k = 0; k < widths[b]; ++k) sum += grad[at + k];
        sums[b] = sum;
        const float inv = 1.f / sum;
        for (int64_t k = 0; k < widths[b]; ++k) inverse[at + k] = inv;
        at += widths[b];
      }
      Vec ce(0.f);
      for (int64_t b = 0; b < n_blocks; b += kLanes) {
        const int64_t n = std::min(kLanes, n_blocks - b);
        // lanes past `n` hold log(0) terms: masked by loading 1 there
        __at_align__ float padded[kLanes];
        for (int64_t k = 0; k < kLanes; ++k) padded[k] = k < n ? sums[b + k] : 1.f;
        ce = ce + Vec::loadu(padded).log() + load(maxima.data() + b, n);
      }
      for (int64_t k = 0; k < n_slots; k += kLanes) {
        const int64_t n = std::min(kLanes, n_slots - k);
        store(grad + k, (load(grad + k, n) * load(inverse.data() + k, n) - load(hot + k, n)) * vscale, n);
      }
      cp[r] = lane_sum(ce) - lane_sum(picked);
    }
  });
}

// ReLU's backward (0 where the layer's output is <= 0) fused with the cast of an fp32 gradient
// into the products' dtype.
template <typename L>
Tensor relu_back_narrow(const Tensor& grad, const Tensor& output) {
  Tensor out = at::empty(grad.sizes(), output.options());
  const int64_t n = grad.numel();
  const float* gp = grad.data_ptr<float>();
  const L* op = output.data_ptr<L>();
  L* dp = out.data_ptr<L>();
  const Vec zero(0.f);
  at::parallel_for(0, n, kGrain * 128, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i += kLanes) {
      const int64_t c = std::min(kLanes, end - i);
      const Vec o = load(op + i, c);
      store(dp + i, Vec::blendv(zero, load(gp + i, c), o > zero), c);
    }
  });
  return out;
}

// Gradients of both heads' outputs from the code's gradient `grad_z` (products' dtype):
// z = mu + eps * std, std = exp(logvar / 2), plus the KL term's. Written side by side into
// `heads` (products' dtype, rows x 2 code) and `wide_heads` (fp32, for the biases' sums).
template <typename L>
void head_gradients(const Tensor& grad_z, const Tensor& mu, const Tensor& sd, const Tensor& eps,
                    Tensor& heads, Tensor& wide_heads) {
  const int64_t rows = eps.size(0), code = eps.size(1);
  const Vec inv_rows(1.f / static_cast<float>(rows)), half_inv(0.5f / static_cast<float>(rows));
  const Vec n_rows(static_cast<float>(rows)), one(1.f);
  const L* gp = grad_z.data_ptr<L>();
  const float* mp = mu.data_ptr<float>();
  const float* sp = sd.data_ptr<float>();
  const float* ep = eps.data_ptr<float>();
  L* hp = heads.data_ptr<L>();
  float* wp = wide_heads.data_ptr<float>();
  at::parallel_for(0, rows, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t in = r * code, out = r * 2 * code;
      for (int64_t j = 0; j < code; j += kLanes) {
        const int64_t n = std::min(kLanes, code - j);
        const Vec g = load(gp + in + j, n), s = load(sp + in + j, n);
        const Vec gm = g + load(mp + in + j, n) * inv_rows;
        const Vec gl = (s * (n_rows * g * load(ep + in + j, n) + s) - one) * half_inv;
        store(wp + out + j, gm, n);
        store(wp + out + code + j, gl, n);
        store(hp + out + j, gm, n);
        store(hp + out + code + j, gl, n);
      }
    }
  });
}

// Back through Linear+ReLU layers whose last output is `output`, writing their gradients;
// `masked`: `grad` already had the last layer's ReLU applied. Returns the first input's gradient
// (the first layer's masked output gradient when `first`).
Tensor back(Tensor grad, Tensor output, const std::vector<Tensor>& weights,
            const std::vector<Tensor>& grads, const std::vector<Tensor>& inputs, bool first,
            bool masked) {
  const int64_t n = static_cast<int64_t>(inputs.size());
  for (int64_t i = n - 1; i >= 0; --i) {
    if (!(masked && i == n - 1)) grad = at::threshold_backward(grad, output, 0);
    Tensor gw = grads[2 * i], gb = grads[2 * i + 1];
    at::mm_out(gw, grad.t(), inputs[i]);
    at::sum_out(gb, grad, at::IntArrayRef{0});
    if (i == 0 && first) return grad;
    grad = at::mm(grad, weights[2 * i]);
    output = inputs[i];
  }
  return grad;
}

class Step {
 public:
  Step(std::vector<Tensor> enc_w, std::vector<Tensor> enc_g, Tensor heads_w, Tensor heads_b,
       Tensor heads_g, std::vector<Tensor> dec_w, std::vector<Tensor> dec_g, Tensor out_w,
       Tensor out_b, Tensor sigma, Tensor mu_bg, Tensor lv_bg, Tensor out_wg, Tensor out_bg,
       Tensor sigma_g, std::vector<int64_t> widths, int64_t n_alpha, double loss_factor,
       bool fused)
      : enc_w_(std::move(enc_w)), enc_g_(std::move(enc_g)), heads_w_(std::move(heads_w)),
        heads_b_(std::move(heads_b)), heads_g_(std::move(heads_g)), dec_w_(std::move(dec_w)),
        dec_g_(std::move(dec_g)), out_w_(std::move(out_w)), out_b_(std::move(out_b)),
        sigma_(std::move(sigma)), mu_bg_(std::move(mu_bg)), lv_bg_(std::move(lv_bg)),
        out_wg_(std::move(out_wg)), out_bg_(std::move(out_bg)), sigma_g_(std::move(sigma_g)),
        widths_(std::move(widths)), n_alpha_(n_alpha), loss_factor_(loss_factor), fused_(fused) {
    TORCH_CHECK(enc_w_.size() == enc_g_.size() && dec_w_.size() == dec_g_.size(),
                "weights and gradients differ in count");
    TORCH_CHECK(enc_w_.size() % 2 == 0 && dec_w_.size() % 2 == 0, "layers come as (weight, bias)");
    code_ = heads_w_.size(0) / 2;
  }

  std::tuple<Tensor, Tensor> operator()(const Tensor& batch, const Tensor& eps) {
    TORCH_CHECK(batch.is_contiguous() && batch.scalar_type() == at::kFloat, "batch: contiguous fp32");
    TORCH_CHECK(eps.is_contiguous() && eps.scalar_type() == at::kFloat && eps.size(1) == code_,
                "eps: contiguous fp32 (rows x code)");
    const auto low = heads_w_.scalar_type();
    if (low == at::kBFloat16) return run<at::BFloat16>(batch, eps);
    TORCH_CHECK(low == at::kFloat, "products in bfloat16 or float32 only");
    return run<float>(batch, eps);
  }

 private:
  template <typename L>
  std::tuple<Tensor, Tensor> run(const Tensor& batch, const Tensor& eps) {
    at::NoGradGuard no_grad;
    const int64_t rows = batch.size(0), width = batch.size(1);
    const float scale = static_cast<float>(loss_factor_ / static_cast<double>(rows));
    const auto low = heads_w_.options();
    const auto f32 = batch.options();

    // encoder
    std::vector<Tensor> inputs;
    const int64_t n_enc = static_cast<int64_t>(enc_w_.size() / 2);
    Tensor h = batch.to(low.dtype());
    for (int64_t i = 0; i < n_enc; ++i) {
      inputs.push_back(h);
      h = linear(h, enc_w_[2 * i], enc_w_[2 * i + 1], true, fused_);
    }
    inputs.push_back(h);
    Tensor heads = linear(h, heads_w_, heads_b_, false, fused_).contiguous();
    Tensor mu = at::empty({rows, code_}, f32), sd = at::empty({rows, code_}, f32);
    Tensor z = at::empty({rows, code_}, low), row_kl = at::empty({rows}, f32);
    reparameterise<L>(heads, eps, mu, sd, z, row_kl);

    // decoder
    h = z;
    for (size_t i = 0; i < dec_w_.size() / 2; ++i) {
      inputs.push_back(h);
      h = linear(h, dec_w_[2 * i], dec_w_[2 * i + 1], true, fused_);
    }
    Tensor last = h.to(at::kFloat);
    Tensor raw = at::addmm(out_b_, last, out_w_.t());
    Tensor grad_raw = at::empty_like(raw);
    Tensor sq_err = at::empty({rows, n_alpha_}, f32), row_ce = at::empty({rows}, f32);
    output_gradient(raw, batch, sigma_, widths_, n_alpha_, scale, grad_raw, sq_err, row_ce);

    double recon = 0.0;
    if (n_alpha_) {
      Tensor sq_sum = sq_err.sum(0);
      const float* qs = sq_sum.data_ptr<float>();
      const float* sg = sigma_.data_ptr<float>();
      float* gs = sigma_g_.data_ptr<float>();
      for (int64_t j = 0; j < n_alpha_; ++j) {
        const float inv_var = 1.f / (sg[j] * sg[j]);
        recon += 0.5 * qs[j] * inv_var + static_cast<double>(rows) * std::log(sg[j]);
        gs[j] = (static_cast<float>(rows) - qs[j] * inv_var) * (scale / sg[j]);
      }
    }
    const float* ce = row_ce.data_ptr<float>();
    const float* kl_rows = row_kl.data_ptr<float>();
    double kl_sum = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      recon += ce[r];
      kl_sum += kl_rows[r];
    }
    const double kl = -0.5 * (static_cast<double>(rows * code_) + kl_sum);

    // backward: output layer (fp32), decoder, heads, encoder
    at::mm_out(out_wg_, grad_raw.t(), last);
    at::sum_out(out_bg_, grad_raw, at::IntArrayRef{0});
    const int64_t n_dec = static_cast<int64_t>(dec_w_.size() / 2);
    std::vector<Tensor> dec_inputs(inputs.begin() + n_enc + 1, inputs.end());
    Tensor g = at::mm(grad_raw, out_w_);
    if (n_dec) {
      g = back(relu_back_narrow<L>(g, h), h, dec_w_, dec_g_, dec_inputs, false, true);
    } else {
      g = g.to(low.dtype());  // (no hidden decoder layer: no ReLU to go back through)
    }
    Tensor grad_heads = at::empty({rows, 2 * code_}, low);
    Tensor wide_heads = at::empty({rows, 2 * code_}, f32);
    head_gradients<L>(g.contiguous(), mu, sd, eps, grad_heads, wide_heads);
    at::sum_out(mu_bg_, wide_heads.narrow(1, 0, code_), at::IntArrayRef{0});
    at::sum_out(lv_bg_, wide_heads.narrow(1, code_, code_), at::IntArrayRef{0});
    Tensor h_enc = inputs[n_enc];
    at::mm_out(heads_g_, grad_heads.t(), h_enc);
    if (n_enc) {
      std::vector<Tensor> enc_inputs(inputs.begin(), inputs.begin() + n_enc);
      back(at::mm(grad_heads, heads_w_), h_enc, enc_w_, enc_g_, enc_inputs, true, false);
    }
    return {at::scalar_tensor(recon * scale, f32), at::scalar_tensor(kl / rows, f32)};
  }

  std::vector<Tensor> enc_w_, enc_g_;
  Tensor heads_w_, heads_b_, heads_g_;
  std::vector<Tensor> dec_w_, dec_g_;
  Tensor out_w_, out_b_, sigma_, mu_bg_, lv_bg_, out_wg_, out_bg_, sigma_g_;
  std::vector<int64_t> widths_;
  int64_t n_alpha_;
  int64_t code_;
  double loss_factor_;
  bool fused_;
};

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "synthkit's native TVAE training step";
  pybind11::class_<Step>(m, "TVAEStep")
      .def(pybind11::init<std::vector<Tensor>, std::vector<Tensor>, Tensor, Tensor, Tensor,
                          std::vector<Tensor>, std::vector<Tensor>, Tensor, Tensor, Tensor, Tensor,
                          Tensor, Tensor, Tensor, Tensor, std::vector<int64_t>, int64_t, double,
                          bool>())
      .def("__call__", &Step::operator(), pybind11::call_guard<pybind11::gil_scoped_release>());
}
