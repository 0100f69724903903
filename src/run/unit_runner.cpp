#include "run/unit_runner.hpp"

#include <omp.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/atomic_file.hpp"
#include "core/content_hash.hpp"
#include "core/error.hpp"
#include "io/dump_reader.hpp"
#include "io/h5.hpp"
#include "io/query_subset.hpp"
#include "run/cluster.hpp"
#include "select/engine.hpp"

namespace hisa {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::atomic<bool> g_signalled{false};
extern "C" void on_stop_signal(int sig) {
  g_signalled.store(true);
  std::signal(sig, SIG_DFL);  // a second signal ends the process at once
}

// SIGINT/SIGTERM set g_signalled while an instance lives; the previous handlers come back afterwards.
class SignalScope {
 public:
  explicit SignalScope(bool active) : active_(active) {
    g_signalled.store(false);
    if (!active_) return;
    old_int_ = std::signal(SIGINT, on_stop_signal);
    old_term_ = std::signal(SIGTERM, on_stop_signal);
  }
  ~SignalScope() {
    if (!active_) return;
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }

 private:
  bool active_;
  void (*old_int_)(int) = SIG_DFL;
  void (*old_term_)(int) = SIG_DFL;
};

// A piece of a unit's input: its keys (first), a batch of queries, or its end.
struct Piece {
  size_t unit = 0;
  std::shared_ptr<const LayerKeys> keys;
  QueryBatch batch;
  std::vector<int64_t> queries;
  bool end = false;
  size_t bytes = 0;
};

// A query of a compressed layer that sees no key row yet has nothing to select or compare: every pipeline that
// runs on units leaves it out (datasets/FORMAT.md, "Compressed keys").
void drop_queries_seeing_nothing(Piece& p) {
  if (p.batch.compress_ratio == 1) return;
  const std::vector<int64_t> rows = rows_seeing_keys(p.batch);
  if (int64_t(rows.size()) == p.batch.count) return;
  std::vector<int64_t> queries;
  for (int64_t r : rows) queries.push_back(p.queries[size_t(r)]);
  p.batch = batch_rows(p.batch, rows);
  p.queries = std::move(queries);
}

size_t bytes_of(const LayerKeys& k) { return (k.k.size() + k.k_scale.size()) * sizeof(float); }
size_t bytes_of(const QueryBatch& b) {
  return (b.q.size() + b.w.size()) * sizeof(float) + (b.q_pos.size() + b.k_start.size() + b.token_pos.size()) * sizeof(int64_t) +
         b.topk_ref.size() * sizeof(int32_t);
}

// Pieces read ahead, bounded by bytes: a push waits while the queue holds pieces and the new one would pass
// the budget (a single piece larger than the budget still goes through, alone).
class PieceQueue {
 public:
  explicit PieceQueue(size_t budget) : budget_(budget) {}
  bool push(Piece p) {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return cancelled_ || q_.empty() || held_ + p.bytes <= budget_; });
    if (cancelled_) return false;
    held_ += p.bytes;
    q_.push_back(std::move(p));
    cv_.notify_all();
    return true;
  }
  std::optional<Piece> pop() {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return cancelled_ || closed_ || !q_.empty(); });
    if (cancelled_ || q_.empty()) return std::nullopt;
    Piece p = std::move(q_.front());
    q_.pop_front();
    held_ -= p.bytes;
    cv_.notify_all();
    return p;
  }
  void close() {
    std::lock_guard lock(m_);
    closed_ = true;
    cv_.notify_all();
  }
  void cancel() {
    std::lock_guard lock(m_);
    cancelled_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Piece> q_;
  size_t budget_, held_ = 0;
  bool closed_ = false, cancelled_ = false;
};

// A reader's key storage, handed round: at most kKeyBuffers LayerKeys exist per reader (the one being scored
// and two read ahead), and the reader waits for one to come back (its last holder dropping it) rather than
// making another, whatever the prefetch budget would allow. A layer's keys then reuse an earlier layer's memory:
// new memory costs page faults when first written (about 13 us per 4 KiB page on a virtual machine), and a
// reader that makes them takes that time from the computing threads beside it.
class KeyBuffers {
 public:
  // A LayerKeys no one holds (given back to this pool when the last copy is dropped), or nullptr once
  // cancelled. The copies keep the pool's state alive, so they may outlive the KeyBuffers itself.
  std::shared_ptr<LayerKeys> take() {
    LayerKeys* k = nullptr;
    {
      std::unique_lock lock(state_->m);
      state_->cv.wait(lock, [&] { return state_->cancelled || !state_->free.empty() || state_->made.size() < kKeyBuffers; });
      if (state_->cancelled) return nullptr;
      if (!state_->free.empty()) {
        k = state_->free.back();
        state_->free.pop_back();
      } else {
        k = state_->made.emplace_back(std::make_unique<LayerKeys>()).get();
      }
    }
    // Made without the lock: should it throw, the deleter gives k back at once (and takes the lock).
    return std::shared_ptr<LayerKeys>(k, [state = state_](LayerKeys* given) {
      std::lock_guard lock(state->m);
      state->free.push_back(given);
      state->cv.notify_all();
    });
  }
  // Wakes a reader waiting in take(), for good: a cancelled run's queued pieces may never give theirs back.
  void cancel() {
    std::lock_guard lock(state_->m);
    state_->cancelled = true;
    state_->cv.notify_all();
  }

 private:
  static constexpr size_t kKeyBuffers = 3;
  struct State {
    std::mutex m;
    std::condition_variable cv;
    std::vector<std::unique_ptr<LayerKeys>> made;
    std::vector<LayerKeys*> free;
    bool cancelled = false;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// What identifies an input file's content (see InputFingerprint). Computed once per file and run.
std::string input_identity(const std::string& path, InputFingerprint how) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw InputError(path, "", std::string("cannot stat: ") + std::strerror(errno));
  std::ostringstream id;
  id << "file=" << std::filesystem::absolute(path).string() << "\nsize=" << st.st_size;
  if (how == InputFingerprint::Content) {
    id << "\ncontent=" << std::hex << hash_file(path) << std::dec;  // its errors name the file
  } else {
    id << "\ninode=" << st.st_ino << "\nmtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec
       << "\nctime=" << st.st_ctim.tv_sec << "." << st.st_ctim.tv_nsec;
  }
  return id.str();
}

// A unit's identity in checkpoints: the run's fingerprint, the input's identity, the sample and the layer.
std::string unit_identity(const RunPlan& plan, const std::string& input, const SampleSource& src, const WorkUnit& u) {
  std::ostringstream id;
  id << plan.fingerprint << "\n" << input;
  id << "\nsample=" << src.sample->name << "\nlayer=" << u.layer << "\nmax_queries=" << plan.max_queries;
  return id.str();
}

// A unit file (docs/long-runs.md, "Checkpoint files"): the magic line; the identity's and the result's lengths
// (uint64 each); the identity; the result; a checksum (uint64, core/content_hash.hpp) of everything before it.
const char kCheckpointMagic[] = "hisa-unit-v2\n";
constexpr size_t kMagicSize = sizeof kCheckpointMagic - 1;
constexpr size_t kHeaderSize = kMagicSize + 2 * sizeof(uint64_t);

std::filesystem::path checkpoint_path(const RunPlan& plan, const WorkUnit& u, const std::string& identity) {
  char name[64];
  std::snprintf(name, sizeof name, "layer_%d.%016llx.unit", u.layer, (unsigned long long)hash_bytes(identity.data(), identity.size()));
  return std::filesystem::path(plan.checkpoint_dir) / name;
}

template <typename T>
void append_raw(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <typename T>
T read_raw(const std::string& in, size_t at) {
  T v;
  std::memcpy(&v, in.data() + at, sizeof v);
  return v;
}

std::string encode_checkpoint(const std::string& identity, const std::string& result) {
  std::string out(kCheckpointMagic, kMagicSize);
  append_raw(out, uint64_t(identity.size()));
  append_raw(out, uint64_t(result.size()));
  out += identity;
  out += result;
  append_raw(out, hash_bytes(out.data(), out.size()));
  return out;
}

// A checkpoint as read: its result, or what is wrong with it (problem), or neither when there is no file.
struct CheckpointRead {
  std::optional<std::string> result;
  std::string problem;
};

// The result a unit file holds for this identity. Damage is found before anything else is trusted: the size must
// be the one the header states and the checksum must hold; only then is the identity compared.
CheckpointRead decode_checkpoint(const std::string& all, const std::string& identity) {
  if (all.size() < kHeaderSize + sizeof(uint64_t)) {
    return {std::nullopt, "is damaged (truncated: " + std::to_string(all.size()) + " bytes, shorter than its header)"};
  }
  if (all.compare(0, kMagicSize, kCheckpointMagic) != 0) {
    return {std::nullopt, "is damaged or of another version (it does not start with \"hisa-unit-v2\")"};
  }
  const uint64_t id_size = read_raw<uint64_t>(all, kMagicSize), result_size = read_raw<uint64_t>(all, kMagicSize + 8);
  const uint64_t body = all.size() - kHeaderSize - sizeof(uint64_t);
  if (id_size > body || result_size != body - id_size) {
    return {std::nullopt, "is damaged (" + std::to_string(all.size()) + " bytes, not the size its header states: truncated?)"};
  }
  const size_t summed = all.size() - sizeof(uint64_t);
  if (hash_bytes(all.data(), summed) != read_raw<uint64_t>(all, summed)) {
    return {std::nullopt, "is damaged (checksum mismatch)"};
  }
  if (all.compare(kHeaderSize, id_size, identity) != 0) {
    return {std::nullopt, "belongs to another run (its options or input differ from this run's)"};
  }
  return {all.substr(kHeaderSize + id_size, result_size), ""};
}

CheckpointRead read_checkpoint(const std::filesystem::path& path, const std::string& identity) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  std::ifstream in(path, std::ios::binary);
  if (!in) return {std::nullopt, "cannot be opened"};
  return decode_checkpoint(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()), identity);
}

void write_checkpoint(const std::filesystem::path& path, const std::string& identity, const std::string& result) {
  const std::string bytes = encode_checkpoint(identity, result);
  write_file_atomically(path.string(), [&](std::ostream& out) { out.write(bytes.data(), std::streamsize(bytes.size())); });
}

}  // namespace

std::vector<WorkUnit> make_work_units(const std::vector<SampleSource>& sources, const std::vector<int>& layers) {
  std::vector<WorkUnit> units;
  for (int layer : layers) {
    for (size_t s = 0; s < sources.size(); ++s) {
      const auto& have = sources[s].sample->layers;
      if (std::binary_search(have.begin(), have.end(), layer)) units.push_back({s, layer});
    }
  }
  return units;
}

RunPlan make_run_plan(const RunOptions& o, int64_t max_queries, int64_t batch) {
  RunPlan plan;
  plan.max_queries = max_queries;
  plan.batch = batch;
  plan.devices = resolve_devices(o.device, o.gpus, o.fp8_mma);
  // Several ranks on one node share its GPUs: rank i of the node takes the i-th GPU of the list (round robin).
  const Cluster& cluster = Cluster::get();
  if (cluster.local_size() > 1 && plan.devices.size() > 1) {
    plan.devices = {plan.devices[size_t(cluster.local_rank()) % plan.devices.size()]};
  }
  plan.prefetch_bytes = o.prefetch_bytes;
  plan.checkpoint_dir = o.checkpoint_dir;
  plan.resume = o.resume;
  plan.input_fingerprint = o.fingerprint;
  plan.handle_signals = o.handle_signals;
  return plan;
}

bool is_output_rank() { return Cluster::get().rank() == 0; }

std::optional<InputFingerprint> parse_input_fingerprint(const std::string& name) {
  if (name == "stat") return InputFingerprint::Stat;
  if (name == "content") return InputFingerprint::Content;
  return std::nullopt;
}

namespace {

// One run of units on this rank: per worker a reader thread (reads its next unit piece by piece into the worker's
// queue) and a worker thread (computes what its reader delivers); this thread writes checkpoints and hands
// results on as units finish. The first error stops every thread and is rethrown by run().
class UnitRun {
 public:
  UnitRun(const std::vector<SampleSource>& sources, const std::vector<WorkUnit>& units, const RunPlan& plan,
          const std::function<std::unique_ptr<UnitWorker>(int device)>& make_worker, RunStats& stats,
          const std::function<void(size_t, const std::string&)>& on_result)
      : sources_(sources), units_(units), plan_(plan), make_worker_(make_worker), stats_(stats), on_result_(on_result),
        results_(units.size()), identity_(units.size()) {}

  std::vector<std::string> run() {
    const auto t0 = Clock::now();
    const Cluster& cluster = Cluster::get();
    stats_ = {};
    stats_.units = int64_t(units_.size());
    stats_.ranks = cluster.size();
    prepare_checkpoints();
    take_resumed_units();
    compute();
    if (g_signalled) {
      throw Interrupted(stats_.resumed + stats_.computed_here, stats_.resumed + int64_t(todo_.size()), plan_.checkpoint_dir);
    }
    return gather(t0);
  }

 private:
  void prepare_checkpoints() const {
    if (!plan_.checkpoint_dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(plan_.checkpoint_dir, ec);
      if (ec) throw OptionError("checkpoint_dir", "{checkpoint_dir}: cannot create " + plan_.checkpoint_dir + ": " + ec.message());
    }
    if (plan_.resume && plan_.checkpoint_dir.empty()) throw OptionError("resume", "{resume} needs {checkpoint_dir} DIR");
  }

  // This rank's units (every size-th); those a checkpoint already holds are taken from it, the rest are to do.
  // A checkpoint that cannot be used is said on stderr, named, and its unit recomputed (and its file rewritten).
  void take_resumed_units() {
    const Cluster& cluster = Cluster::get();
    std::map<const DumpReader*, std::string> inputs;  // each file's identity, found once
    for (size_t u = 0; u < units_.size(); ++u) {
      if (int(u % size_t(cluster.size())) != cluster.rank()) continue;
      if (!plan_.checkpoint_dir.empty()) {
        const SampleSource& src = sources_[units_[u].source];
        auto input = inputs.find(src.reader);
        if (input == inputs.end()) {
          input = inputs.emplace(src.reader, input_identity(src.reader->path(), plan_.input_fingerprint)).first;
        }
        identity_[u] = unit_identity(plan_, input->second, src, units_[u]);
      }
      if (plan_.resume) {
        const std::filesystem::path path = checkpoint_path(plan_, units_[u], identity_[u]);
        CheckpointRead r = read_checkpoint(path, identity_[u]);
        if (r.result) {
          results_[u] = std::move(*r.result);
          ++stats_.resumed;
          if (on_result_) on_result_(u, *results_[u]);
          continue;
        }
        if (!r.problem.empty()) std::cerr << "hisa: checkpoint " << path.string() << " " << r.problem << "; recomputing it\n";
      }
      todo_.push_back(u);
    }
  }

  void compute() {
    SignalScope signals(plan_.handle_signals);
    devices_ = plan_.devices.empty() ? std::vector<int>{-1} : plan_.devices;
    stats_.workers = int(devices_.size());
    reading_.assign(devices_.size(), 0);
    decoding_.assign(devices_.size(), 0);
    computing_.assign(devices_.size(), 0);
    waiting_.assign(devices_.size(), 0);
    for (size_t w = 0; w < devices_.size(); ++w) {
      key_buffers_.push_back(std::make_unique<KeyBuffers>());
      queues_.push_back(std::make_unique<PieceQueue>(plan_.prefetch_bytes));
    }
    workers_left_ = int(devices_.size());
    std::vector<std::thread> threads;
    for (size_t w = 0; w < devices_.size(); ++w) {
      threads.emplace_back([this, w] { read(w); });
      threads.emplace_back([this, w] { work(w); });
    }
    std::exception_ptr main_error = hand_on_results();
    for (auto& t : threads) t.join();
    for (size_t w = 0; w < devices_.size(); ++w) {
      stats_.reading += reading_[w] - decoding_[w];  // reading_ holds the reader's whole time, decoding included
      stats_.decoding += decoding_[w];
      stats_.computing += computing_[w];
      stats_.waiting += waiting_[w];
    }
    if (error_) std::rethrow_exception(error_);
    if (main_error) std::rethrow_exception(main_error);
  }

  // Each std::thread starts with OpenMP's default team size, not the caller's: set it on each.
  void use_plan_threads() const {
    if (plan_.threads > 0) omp_set_num_threads(plan_.threads);
  }

  void fail(std::exception_ptr e) {
    std::lock_guard lock(m_);
    if (!error_) error_ = e;
    stop_ = true;
    cv_.notify_all();
  }
  void cancel_queues() {
    for (auto& q : queues_) q->cancel();
    for (auto& k : key_buffers_) k->cancel();
  }

  // Reader of worker w: takes the next unit to do and reads it piece by piece (keys, query batches, end) into the
  // worker's queue.
  void read(size_t w) {
    use_plan_threads();
    try {
      while (!stop_) {
        // Storage first, then the unit: a reader waiting for its worker must not hold a unit another worker could
        // take. Waiting here for the worker to give storage back is not reading.
        std::shared_ptr<LayerKeys> keys = key_buffers_[w]->take();
        if (!keys) break;  // cancelled
        const size_t k = next_++;
        if (k >= todo_.size() || !read_unit(w, todo_[k], std::move(keys))) break;
      }
    } catch (...) {
      fail(std::current_exception());
    }
    queues_[w]->close();
  }
  // False when the queue was cancelled.
  // keys: storage for the unit's keys (KeyBuffers::take).
  bool read_unit(size_t w, size_t u, std::shared_ptr<LayerKeys> keys) {
    const SampleSource& src = sources_[units_[u].source];
    auto t = Clock::now();
    std::unique_ptr<LayerReader> layer;
    {
      // Opening takes the HDF5 lock for its whole length; reads take it per HDF5 call (io/h5.hpp).
      std::lock_guard lock(h5::library_mutex());
      layer = std::make_unique<LayerReader>(src.reader->open_layer(src.sample->name, units_[u].layer));
    }
    layer->read_keys_into(*keys);
    const std::vector<int64_t> picked = pick_queries(layer->shape().queries, plan_.max_queries);
    reading_[w] += seconds_since(t);
    Piece first;
    first.unit = u;
    first.bytes = bytes_of(*keys);
    first.keys = std::move(keys);
    bool ok = queues_[w]->push(std::move(first));
    for (size_t at = 0; ok && at < picked.size() && !stop_; at += size_t(plan_.batch)) {
      Piece p;
      p.unit = u;
      p.queries.assign(picked.begin() + ptrdiff_t(at),
                       picked.begin() + ptrdiff_t(std::min(picked.size(), at + size_t(plan_.batch))));
      t = Clock::now();
      p.batch = read_query_subset(*layer, p.queries);
      drop_queries_seeing_nothing(p);
      reading_[w] += seconds_since(t);
      if (p.batch.count == 0) continue;
      p.bytes = bytes_of(p.batch);
      ok = queues_[w]->push(std::move(p));
    }
    decoding_[w] += layer->decoding_seconds();
    {
      std::lock_guard lock(h5::library_mutex());
      layer.reset();
    }
    Piece end;
    end.unit = u;
    end.end = true;
    return ok && queues_[w]->push(std::move(end));
  }

  // Worker w: computes the units its reader delivers on its device.
  void work(size_t w) {
    use_plan_threads();
    try {
      std::unique_ptr<UnitWorker> worker = make_worker_(devices_[w]);
      std::shared_ptr<const LayerKeys> keys;
      for (;;) {
        auto t = Clock::now();
        std::optional<Piece> p = queues_[w]->pop();
        waiting_[w] += seconds_since(t);
        if (!p || stop_) break;
        t = Clock::now();
        if (p->keys) {
          keys = p->keys;
          worker->begin(units_[p->unit], *keys);
        } else if (p->end) {
          std::string r = worker->finish();
          keys.reset();
          computing_[w] += seconds_since(t);
          std::lock_guard lock(m_);
          finished_.emplace_back(p->unit, std::move(r));
          cv_.notify_all();
          continue;
        } else {
          worker->add(p->batch, p->queries);
        }
        computing_[w] += seconds_since(t);
      }
    } catch (...) {
      fail(std::current_exception());
    }
    queues_[w]->cancel();  // a reader waiting on a full queue, or for key storage, must not wait forever
    key_buffers_[w]->cancel();
    std::lock_guard lock(m_);
    --workers_left_;
    cv_.notify_all();
  }

  // On this thread until every worker is done: checkpoints and on_result as units finish; polls for signals.
  // Returns the first error of its own (a checkpoint that cannot be written, an on_result that throws).
  std::exception_ptr hand_on_results() {
    std::exception_ptr main_error;
    for (;;) {
      std::unique_lock lock(m_);
      cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return !finished_.empty() || workers_left_ == 0 || error_; });
      if (g_signalled || error_) stop_ = true;
      if (stop_) cancel_queues();
      while (!finished_.empty()) {
        auto [u, r] = std::move(finished_.front());
        finished_.pop_front();
        lock.unlock();
        try {
          if (!plan_.checkpoint_dir.empty()) write_checkpoint(checkpoint_path(plan_, units_[u], identity_[u]), identity_[u], r);
          ++stats_.computed_here;
          if (on_result_) on_result_(u, r);
        } catch (...) {
          if (!main_error) main_error = std::current_exception();
          stop_ = true;
          cancel_queues();
        }
        results_[u] = std::move(r);
        lock.lock();
      }
      if (workers_left_ == 0) return main_error;
    }
  }

  // Every rank's results on rank 0, by unit; other ranks get an empty vector.
  std::vector<std::string> gather(Clock::time_point t0) {
    const Cluster& cluster = Cluster::get();
    std::vector<double> sums{stats_.reading, stats_.computing, stats_.waiting, double(stats_.resumed),
                             double(stats_.computed_here), double(stats_.workers), stats_.decoding};
    cluster.sum_to_root(sums);
    cluster.gather(results_);
    stats_.wall = seconds_since(t0);
    if (cluster.rank() != 0) return {};
    stats_.reading = sums[0], stats_.computing = sums[1], stats_.waiting = sums[2];
    stats_.resumed = int64_t(sums[3]), stats_.computed_here = int64_t(sums[4]), stats_.workers = int(sums[5]);
    stats_.decoding = sums[6];
    std::vector<std::string> out(units_.size());
    for (size_t u = 0; u < units_.size(); ++u) {
      if (!results_[u]) throw std::logic_error("run_units: unit " + std::to_string(u) + " has no result");
      out[u] = std::move(*results_[u]);
    }
    return out;
  }

  const std::vector<SampleSource>& sources_;
  const std::vector<WorkUnit>& units_;
  const RunPlan& plan_;
  const std::function<std::unique_ptr<UnitWorker>(int device)>& make_worker_;
  RunStats& stats_;
  const std::function<void(size_t, const std::string&)>& on_result_;
  std::vector<std::optional<std::string>> results_;
  std::vector<std::string> identity_;
  std::vector<size_t> todo_;
  std::vector<int> devices_;
  std::vector<std::unique_ptr<KeyBuffers>> key_buffers_;
  std::vector<std::unique_ptr<PieceQueue>> queues_;
  std::vector<double> reading_, decoding_, computing_, waiting_;  // per worker
  std::atomic<size_t> next_{0};                         // the next of todo_ to read
  std::atomic<bool> stop_{false};
  std::mutex m_;  // guards the fields below
  std::condition_variable cv_;
  std::deque<std::pair<size_t, std::string>> finished_;
  std::exception_ptr error_;
  int workers_left_ = 0;
};

}  // namespace

std::vector<std::string> run_units(const std::vector<SampleSource>& sources, const std::vector<WorkUnit>& units,
                                   const RunPlan& plan, const std::function<std::unique_ptr<UnitWorker>(int device)>& make_worker,
                                   RunStats& stats, const std::function<void(size_t, const std::string&)>& on_result) {
  return UnitRun(sources, units, plan, make_worker, stats, on_result).run();
}

}  // namespace hisa
