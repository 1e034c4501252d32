// star-et-bench: the ExecuTorch counterpart of llama-bench for STAR lab .pte files.
//
// A .pte written by `star export --runtime executorch` has two methods sharing their state
// (KV caches, conv/SSM/linear-attention state) in one mutable-buffer arena:
//   prefill(tokens (1, chunk) int64, input_pos (1,) int64, kv_positions (L,) int64) -> (1, V)
//   decode (tokens (1, 1)     int64, input_pos (1,) int64, kv_positions (L,) int64) -> (1, V)
// with kv_positions = arange(input_pos + T), and constant methods max_context, prefill_chunk,
// vocab_size. A prompt of C tokens is C / chunk prefill calls, then C % chunk decode calls.
//
// Modes (one JSON object on stdout; errors as "error: ..." on stderr, exit 2 bad input, 1 other):
//   info    methods and metadata
//   ttft    time the prefill of C tokens from position 0 (warm-up runs untimed), --reps times
//   decode  prefill C tokens once (untimed), snapshot the state arena, then --reps times:
//           restore it and time --n-gen decode calls (ms/token = sample / n_gen)
//   eval    run --tokens through the prefill schedule, write each call's logits (float32) to
//           --logits-out: the equivalence check against torch
// The planned memory (activations, state) is allocated here with calloc, so pages a context
// never touches (KV slots beyond C) are never resident: peak RSS follows the context, as a KV
// cache sized for C would. Threads are set before any method is loaded (XNNPACK reads them then).

#include <executorch/devtools/etdump/etdump_flatcc.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/backend/options.h>
#include <executorch/runtime/core/hierarchical_allocator.h>
#include <executorch/runtime/platform/runtime.h>

#include <cerrno>
#include <chrono>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#ifndef STAR_ET_VERSION
#define STAR_ET_VERSION "unknown"
#endif

// The wheel ships the thread-pool library but not its header; these two members are all we use.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::extension::TensorPtr;
using executorch::extension::from_blob;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::HierarchicalAllocator;
using executorch::runtime::Span;

namespace {

constexpr int kFormat = 1;  // JSON output format; bump on incompatible change

struct Args {
  std::string model;
  std::string mode;
  long context = 0;
  long n_gen = 32;
  long reps = 5;
  long warmup = 1;
  long threads = 1;
  std::string etdump;
  std::string tokens;
  std::string logits_out;
  std::string cpu_mask;
};

[[noreturn]] void fail(int code, const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  std::exit(code);
}

long parse_long(const std::string& flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  long value = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') {
    fail(2, flag + ": not an integer: " + text);
  }
  return value;
}

Args parse_args(int argc, char** argv) {
  Args args;
  if (argc < 3) {
    fail(2,
         "usage: star-et-bench MODEL.pte info|ttft|decode|eval [--context C] [--n-gen N] "
         "[--reps R] [--warmup W] [--threads T] [--etdump PATH] [--tokens a,b,...] "
         "[--logits-out PATH] [--cpu-mask HEX]");
  }
  args.model = argv[1];
  args.mode = argv[2];
  for (int i = 3; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) fail(2, flag + ": missing value");
    const char* value = argv[++i];
    if (flag == "--context") args.context = parse_long(flag, value);
    else if (flag == "--n-gen") args.n_gen = parse_long(flag, value);
    else if (flag == "--reps") args.reps = parse_long(flag, value);
    else if (flag == "--warmup") args.warmup = parse_long(flag, value);
    else if (flag == "--threads") args.threads = parse_long(flag, value);
    else if (flag == "--etdump") args.etdump = value;
    else if (flag == "--tokens") args.tokens = value;
    else if (flag == "--logits-out") args.logits_out = value;
    else if (flag == "--cpu-mask") args.cpu_mask = value;
    else fail(2, "unknown option " + flag);
  }
  if (args.mode != "info" && args.mode != "ttft" && args.mode != "decode" && args.mode != "eval") {
    fail(2, "mode must be info, ttft, decode or eval, got " + args.mode);
  }
  if (args.threads < 1 || args.reps < 1 || args.warmup < 0 || args.n_gen < 1) {
    fail(2, "--threads, --reps and --n-gen must be >= 1, --warmup >= 0");
  }
  return args;
}

void check(Error err, const char* what) {
  if (err != Error::Ok) {
    std::ostringstream out;
    out << what << " failed (executorch error 0x" << std::hex << static_cast<int>(err) << ")";
    fail(1, out.str());
  }
}

// Memory-planned buffers shared by both methods: index i serves mem_id i + 1 in every method.
// With share_mutable_buffers the state lives in mem_id 2 (index 1), activations in mem_id 1.
class SharedArenas {
 public:
  void reserve(Module& module, const std::string& method) {
    auto meta = module.method_meta(method);
    if (!meta.ok()) check(meta.error(), ("method_meta(" + method + ")").c_str());
    size_t n = meta->num_memory_planned_buffers();
    if (sizes_.size() < n) sizes_.resize(n, 0);
    for (size_t i = 0; i < n; ++i) {
      auto size = meta->memory_planned_buffer_size(i);
      if (!size.ok()) check(size.error(), "memory_planned_buffer_size");
      if (static_cast<size_t>(*size) > sizes_[i]) sizes_[i] = static_cast<size_t>(*size);
    }
  }

  void allocate() {
    for (size_t size : sizes_) {
      // calloc: zeroed and, for large sizes, fresh untouched pages (not resident until used)
      void* data = size ? std::calloc(1, size) : nullptr;
      if (size && data == nullptr) {
        fail(1, "cannot allocate " + std::to_string(size) + " bytes of planned memory "
                "(out of memory)");
      }
      buffers_.emplace_back(static_cast<uint8_t*>(data), size);
    }
  }

  HierarchicalAllocator* allocator_for(Module& module, const std::string& method) {
    auto meta = module.method_meta(method);
    size_t n = meta->num_memory_planned_buffers();
    auto spans = std::make_unique<std::vector<Span<uint8_t>>>(buffers_.begin(), buffers_.begin() + n);
    allocators_.push_back(std::make_unique<HierarchicalAllocator>(
        Span<Span<uint8_t>>(spans->data(), spans->size())));
    span_lists_.push_back(std::move(spans));
    return allocators_.back().get();
  }

  size_t total() const {
    size_t sum = 0;
    for (size_t s : sizes_) sum += s;
    return sum;
  }
  size_t state_bytes() const { return sizes_.size() > 1 ? sizes_[1] : 0; }
  Span<uint8_t> state() { return buffers_.size() > 1 ? buffers_[1] : Span<uint8_t>(); }
  const std::vector<size_t>& sizes() const { return sizes_; }

  ~SharedArenas() {
    for (auto& span : buffers_) std::free(span.data());
  }

 private:
  std::vector<size_t> sizes_;
  std::vector<Span<uint8_t>> buffers_;
  std::vector<std::unique_ptr<std::vector<Span<uint8_t>>>> span_lists_;
  std::vector<std::unique_ptr<HierarchicalAllocator>> allocators_;
};

long constant(Module& module, const char* name) {
  auto out = module.execute(name);
  if (!out.ok() || out->empty() || !(*out)[0].isInt()) {
    fail(2, std::string("not a STAR lab .pte: constant method ") + name + " missing");
  }
  return static_cast<long>((*out)[0].toInt());
}

class Runner {
 public:
  Runner(Module& module, long chunk, long max_context, long vocab)
      : module_(module), chunk_(chunk), vocab_(vocab),
        positions_(static_cast<size_t>(max_context)), tokens_(static_cast<size_t>(chunk)) {
    for (long i = 0; i < max_context; ++i) positions_[static_cast<size_t>(i)] = i;
  }

  // One call at `pos` with `n` tokens (n == chunk: prefill, n == 1: decode); returns the logits.
  const float* call(const int64_t* tokens, long n, long pos) {
    std::memcpy(tokens_.data(), tokens, static_cast<size_t>(n) * sizeof(int64_t));
    input_pos_ = pos;
    auto tok = from_blob(tokens_.data(), {1, static_cast<int32_t>(n)}, ScalarType::Long);
    auto ip = from_blob(&input_pos_, {1}, ScalarType::Long);
    auto kv = from_blob(positions_.data(), {static_cast<int32_t>(pos + n)}, ScalarType::Long);
    auto out = module_.execute(n == chunk_ && n > 1 ? "prefill" : "decode",
                               {EValue(*tok), EValue(*ip), EValue(*kv)});
    if (!out.ok()) check(out.error(), n == chunk_ ? "prefill" : "decode");
    const auto& logits = (*out)[0].toTensor();
    if (logits.numel() != vocab_) fail(1, "logits have the wrong size");
    return logits.const_data_ptr<float>();
  }

  // The prompt schedule: full chunks, then single tokens. Returns the last call's logits.
  const float* prompt(const std::vector<int64_t>& tokens, long n,
                      std::vector<std::vector<float>>* every = nullptr) {
    const float* logits = nullptr;
    long pos = 0;
    auto keep = [&](const float* l) {
      if (every) every->emplace_back(l, l + vocab_);
    };
    for (; pos + chunk_ <= n && chunk_ > 1; pos += chunk_) {
      logits = call(tokens.data() + pos, chunk_, pos);
      keep(logits);
    }
    for (; pos < n; ++pos) {
      logits = call(tokens.data() + pos, 1, pos);
      keep(logits);
    }
    return logits;
  }

 private:
  Module& module_;
  long chunk_;
  long vocab_;
  std::vector<int64_t> positions_;
  std::vector<int64_t> tokens_;
  int64_t input_pos_ = 0;
};

// Deterministic token ids in [0, vocab): the figures do not depend on token values.
std::vector<int64_t> synthetic_tokens(long n, long vocab) {
  std::vector<int64_t> out(static_cast<size_t>(n));
  uint64_t state = 0x9E3779B97F4A7C15ull;
  for (auto& t : out) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    t = static_cast<int64_t>(state % static_cast<uint64_t>(vocab));
  }
  return out;
}

std::vector<int64_t> parse_tokens(const std::string& text, long vocab) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    long t = parse_long("--tokens", item.c_str());
    if (t < 0 || t >= vocab) fail(2, "--tokens: id " + item + " outside the vocabulary");
    out.push_back(t);
  }
  if (out.empty()) fail(2, "--tokens: no token ids");
  return out;
}

// Pin this process (and the pool threads it creates afterwards) to the CPUs of a hex mask.
void pin_to(const std::string& text) {
  std::string hex = text.rfind("0x", 0) == 0 ? text.substr(2) : text;
  if (hex.empty() || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    fail(2, "--cpu-mask: not a hex mask: " + text);
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  int cpu = 0;
  for (auto it = hex.rbegin(); it != hex.rend(); ++it) {
    int nibble = std::stoi(std::string(1, *it), nullptr, 16);
    for (int bit = 0; bit < 4; ++bit, ++cpu) {
      if ((nibble >> bit) & 1 && cpu < CPU_SETSIZE) CPU_SET(cpu, &set);
    }
  }
  if (CPU_COUNT(&set) == 0) fail(2, "--cpu-mask selects no CPU");
  if (sched_setaffinity(0, sizeof(set), &set) != 0) fail(2, "--cpu-mask: sched_setaffinity failed");
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string join(const std::vector<int64_t>& values) {
  std::ostringstream out;
  for (size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << values[i];
  return out.str();
}

void write_etdump(executorch::etdump::ETDumpGen* tracer, const std::string& path) {
  auto result = tracer->get_etdump_data();
  if (result.buf == nullptr || result.size == 0) fail(1, "no ETDump data was recorded");
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(result.buf), static_cast<std::streamsize>(result.size));
  std::free(result.buf);
  if (!out) fail(1, "cannot write ETDump to " + path);
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse_args(argc, argv);
  if (!args.cpu_mask.empty()) pin_to(args.cpu_mask);
  executorch::runtime::runtime_init();
  // One packed copy of the weights for both methods: without XNNPACK's weight cache, prefill
  // and decode each pack every weight at load (peak RSS of a float32 LFM2-350M: 2.9 GB, twice
  // its weights). Key names from backends/xnnpack/runtime/XNNPACKBackend.h (not in the wheel).
  {
    executorch::runtime::BackendOptions<1> xnnpack;
    xnnpack.set_option("weight_cache_enabled", true);
    check(executorch::runtime::set_option("XnnpackBackend", xnnpack.view()),
          "enabling the XNNPACK weight cache");
  }
  // Before any method is loaded: XNNPACK sizes its work to the pool it finds at load time.
  executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(
      static_cast<uint32_t>(args.threads));

  std::unique_ptr<executorch::etdump::ETDumpGen> tracer_owner;
  executorch::etdump::ETDumpGen* tracer = nullptr;
  if (!args.etdump.empty()) {
    tracer_owner = std::make_unique<executorch::etdump::ETDumpGen>();
    tracer = tracer_owner.get();
  }
  {
    // Start from a cold page cache for the program file. It is memory-mapped, and how much of
    // it is resident depends on how its pages got into the cache: a freshly written file is
    // mapped in large folios, which put 190 MB more into the peak RSS of an 8da4w LFM2-350M
    // than the same file read from disk. Writing back and dropping its pages makes the figure
    // independent of whether the file was just exported, fetched or read before.
    int fd = open(args.model.c_str(), O_RDONLY);
    if (fd < 0) fail(2, "cannot open model file " + args.model);
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
  int64_t load_start = now_ns();
  Module module(args.model, Module::LoadMode::Mmap, std::move(tracer_owner));
  auto names = module.method_names();
  if (!names.ok()) fail(2, args.model + ": not an ExecuTorch program");
  for (const char* needed : {"prefill", "decode", "max_context", "prefill_chunk", "vocab_size"}) {
    if (!names->count(needed)) {
      fail(2, args.model + ": not a STAR lab .pte (no method '" + needed + "')");
    }
  }
  long max_context = constant(module, "max_context");
  long chunk = constant(module, "prefill_chunk");
  long vocab = constant(module, "vocab_size");

  SharedArenas arenas;
  arenas.reserve(module, "prefill");
  arenas.reserve(module, "decode");

  if (args.mode == "info") {
    std::printf(
        "{\"runner\": \"star-et-bench\", \"format\": %d, \"executorch_version\": \"%s\", "
        "\"max_context\": %ld, \"prefill_chunk\": %ld, \"vocab_size\": %ld, "
        "\"planned_bytes\": %zu, \"state_bytes\": %zu}\n",
        kFormat, STAR_ET_VERSION, max_context, chunk, vocab, arenas.total(), arenas.state_bytes());
    return 0;
  }
  if (args.mode != "eval") {
    if (args.context < 1) fail(2, "--context must be >= 1");
    long needed = args.context + (args.mode == "decode" ? args.n_gen : 0);
    if (needed > max_context) {
      fail(2, "context " + std::to_string(args.context) +
                  (args.mode == "decode" ? " + " + std::to_string(args.n_gen) + " generated" : "") +
                  " exceeds the program's max_context " + std::to_string(max_context));
    }
  }

  try {
    arenas.allocate();
    for (const char* method : {"prefill", "decode"}) {
      check(module.load_method(method, arenas.allocator_for(module, method)), method);
    }
  } catch (const std::bad_alloc&) {
    fail(1, "cannot allocate memory while loading (out of memory)");
  }
  double load_ms = static_cast<double>(now_ns() - load_start) / 1e6;
  Runner runner(module, chunk, max_context, vocab);

  std::vector<int64_t> samples;
  long prefill_calls = args.context / chunk;
  long decode_calls = args.context % chunk;
  try {
    if (args.mode == "eval") {
      auto tokens = parse_tokens(args.tokens, vocab);
      if (static_cast<long>(tokens.size()) > max_context) fail(2, "--tokens: longer than max_context");
      if (args.logits_out.empty()) fail(2, "eval needs --logits-out");
      std::vector<std::vector<float>> every;
      runner.prompt(tokens, static_cast<long>(tokens.size()), &every);
      std::ofstream out(args.logits_out, std::ios::binary);
      for (const auto& row : every) {
        out.write(reinterpret_cast<const char*>(row.data()),
                  static_cast<std::streamsize>(row.size() * sizeof(float)));
      }
      if (!out) fail(1, "cannot write " + args.logits_out);
      std::printf(
          "{\"runner\": \"star-et-bench\", \"format\": %d, \"executorch_version\": \"%s\", "
          "\"mode\": \"eval\", \"calls\": %zu, \"vocab_size\": %ld, \"prefill_chunk\": %ld}\n",
          kFormat, STAR_ET_VERSION, every.size(), vocab, chunk);
      if (tracer) write_etdump(tracer, args.etdump);
      return 0;
    }
    auto tokens = synthetic_tokens(args.context + args.n_gen, vocab);
    if (args.mode == "ttft") {
      for (long i = 0; i < args.warmup; ++i) runner.prompt(tokens, args.context);
      for (long i = 0; i < args.reps; ++i) {
        int64_t start = now_ns();
        runner.prompt(tokens, args.context);
        samples.push_back(now_ns() - start);
      }
    } else {  // decode at depth C
      runner.prompt(tokens, args.context);
      Span<uint8_t> state = arenas.state();
      std::vector<uint8_t> snapshot(state.data(), state.data() + state.size());
      for (long i = -args.warmup; i < args.reps; ++i) {
        std::memcpy(state.data(), snapshot.data(), snapshot.size());
        int64_t start = now_ns();
        for (long g = 0; g < args.n_gen; ++g) {
          runner.call(tokens.data() + args.context + g, 1, args.context + g);
        }
        if (i >= 0) samples.push_back(now_ns() - start);
      }
    }
  } catch (const std::bad_alloc&) {
    fail(1, "cannot allocate memory (out of memory)");
  }
  if (tracer) write_etdump(tracer, args.etdump);
  std::printf(
      "{\"runner\": \"star-et-bench\", \"format\": %d, \"executorch_version\": \"%s\", "
      "\"mode\": \"%s\", \"context\": %ld, \"n_gen\": %ld, \"threads\": %ld, \"reps\": %ld, "
      "\"warmup\": %ld, \"max_context\": %ld, \"prefill_chunk\": %ld, \"prefill_calls\": %ld, "
      "\"decode_calls\": %ld, \"load_ms\": %.3f, \"planned_bytes\": %zu, \"state_bytes\": %zu, "
      "\"samples_ns\": [%s]}\n",
      kFormat, STAR_ET_VERSION, args.mode.c_str(), args.context,
      args.mode == "decode" ? args.n_gen : 0L, args.threads, args.reps, args.warmup, max_context,
      chunk, prefill_calls, decode_calls, load_ms, arenas.total(), arenas.state_bytes(),
      join(samples).c_str());
  return 0;
}
