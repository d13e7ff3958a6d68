// synthkit's native 16-bit quantile draws (synthkit/nn/draws.py): the values the Python path
// gives, bit for bit, in one pass and without its intermediate arrays.
//
// The Python path fills 64-bit words from numpy's SFC64 (random_raw), views them as int16,
// widens those to int32 indices (+32768) and gathers from a 65,536-entry quantile table: four
// passes over memory, about 1.5 ns a value on one Zen 4 core. Here the same SFC64 recurrence
// (numpy/random/src/sfc64/sfc64.h: the state numpy's seeding leaves is handed in) makes each
// word in a register and its four 16-bit lanes, lowest first, index the table directly
// (int16 + 32768 is the lane's bits with the top one flipped): the same words, the same
// values, one pass. The table holds fp32 or bf16 values; only their bits are copied.
//
// Plain pybind11 (no torch headers): the caller passes addresses of contiguous buffers it owns
// and checks; the GIL is released while the buffer fills.

#include <pybind11/pybind11.h>

#include <cstdint>

namespace {

struct SFC64 {
  uint64_t a, b, c, counter;

  inline uint64_t next() {
    const uint64_t tmp = a + b + counter++;
    a = b ^ (b >> 11);
    b = c + (c << 3);
    c = ((c >> 40) | (c << 24)) + tmp;  // rotate right by 40
    return tmp;
  }
};

template <typename Bits>
void fill(SFC64 rng, const Bits* table, Bits* out, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint64_t word = rng.next();
    out[i] = table[(word & 0xffff) ^ 0x8000];
    out[i + 1] = table[((word >> 16) & 0xffff) ^ 0x8000];
    out[i + 2] = table[((word >> 32) & 0xffff) ^ 0x8000];
    out[i + 3] = table[(word >> 48) ^ 0x8000];
  }
  if (i < n) {  // the last word's first lanes
    uint64_t word = rng.next();
    for (; i < n; ++i, word >>= 16) {
      out[i] = table[(word & 0xffff) ^ 0x8000];
    }
  }
}

void quantile_draws(uint64_t a, uint64_t b, uint64_t c, uint64_t counter, uintptr_t table,
                    uintptr_t out, int64_t n, int itemsize) {
  if (itemsize != 2 && itemsize != 4) {
    throw pybind11::value_error("quantile_draws: values must be 2 or 4 bytes wide");
  }
  const SFC64 rng{a, b, c, counter};
  pybind11::gil_scoped_release released;
  if (itemsize == 4) {
    fill(rng, reinterpret_cast<const uint32_t*>(table), reinterpret_cast<uint32_t*>(out), n);
  } else {
    fill(rng, reinterpret_cast<const uint16_t*>(table), reinterpret_cast<uint16_t*>(out), n);
  }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "synthkit's native 16-bit quantile draws from numpy's SFC64 stream";
  m.def("quantile_draws", &quantile_draws,
        "Fill out[:n] with table[lane ^ 0x8000] for the 16-bit lanes of the SFC64 words that "
        "start from state (a, b, c, counter); table and out are addresses of contiguous buffers.");
}
