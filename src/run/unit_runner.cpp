#include "run/unit_runner.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/atomic_file.hpp"
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

size_t bytes_of(const LayerKeys& k) { return (k.k.size() + k.k_scale.size()) * sizeof(float); }
size_t bytes_of(const QueryBatch& b) {
  return (b.q.size() + b.w.size()) * sizeof(float) + (b.q_pos.size() + b.k_start.size()) * sizeof(int64_t) +
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

// A LayerKeys no one else holds any more, for the next read (its storage is reused), or a new one. At most
// a few are kept: the one being scored, the one being read and one queued.
std::shared_ptr<LayerKeys> recycled_keys(std::vector<std::shared_ptr<LayerKeys>>& pool) {
  for (auto& k : pool) {
    if (k.use_count() == 1) return k;
  }
  auto fresh = std::make_shared<LayerKeys>();
  if (pool.size() < 3) pool.push_back(fresh);
  return fresh;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// A unit's identity in checkpoints: the run's fingerprint plus the file, sample and layer.
std::string unit_identity(const RunPlan& plan, const SampleSource& src, const WorkUnit& u) {
  std::ostringstream id;
  id << plan.fingerprint << "\nfile=" << std::filesystem::absolute(src.reader->path()).string();
  std::error_code ec;
  const auto size = std::filesystem::file_size(src.reader->path(), ec);
  const auto mtime = std::filesystem::last_write_time(src.reader->path(), ec);
  id << "\nsize=" << (ec ? 0 : size) << "\nmtime=" << (ec ? 0 : mtime.time_since_epoch().count());
  id << "\nsample=" << src.sample->name << "\nlayer=" << u.layer << "\nmax_queries=" << plan.max_queries;
  return id.str();
}

const char kCheckpointMagic[] = "hisa-unit-v1\n";

std::filesystem::path checkpoint_path(const RunPlan& plan, const WorkUnit& u, const std::string& identity) {
  char name[64];
  std::snprintf(name, sizeof name, "layer_%d.%016llx.unit", u.layer, (unsigned long long)fnv1a(identity));
  return std::filesystem::path(plan.checkpoint_dir) / name;
}

std::optional<std::string> read_checkpoint(const std::filesystem::path& path, const std::string& identity) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string head = kCheckpointMagic + identity + '\0';
  if (all.compare(0, head.size(), head) != 0) return std::nullopt;  // another run's, or damaged
  return all.substr(head.size());
}

void write_checkpoint(const std::filesystem::path& path, const std::string& identity, const std::string& result) {
  write_file_atomically(path.string(), [&](std::ostream& out) { out << kCheckpointMagic << identity << '\0' << result; });
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
  plan.handle_signals = o.handle_signals;
  return plan;
}

bool is_output_rank() { return Cluster::get().rank() == 0; }

std::vector<std::string> run_units(const std::vector<SampleSource>& sources, const std::vector<WorkUnit>& units,
                                   const RunPlan& plan, const std::function<std::unique_ptr<UnitWorker>(int device)>& make_worker,
                                   RunStats& stats, const std::function<void(size_t, const std::string&)>& on_result) {
  const auto t0 = Clock::now();
  const Cluster& cluster = Cluster::get();
  stats = {};
  stats.units = int64_t(units.size());
  stats.ranks = cluster.size();
  if (!plan.checkpoint_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(plan.checkpoint_dir, ec);
    if (ec) throw OptionError("checkpoint_dir", "{checkpoint_dir}: cannot create " + plan.checkpoint_dir + ": " + ec.message());
  }
  if (plan.resume && plan.checkpoint_dir.empty()) throw OptionError("resume", "{resume} needs {checkpoint_dir} DIR");

  // This rank's units (every size-th); those a checkpoint already holds are taken from it.
  std::vector<std::optional<std::string>> results(units.size());
  std::vector<std::string> identity(units.size());
  std::vector<size_t> todo;
  for (size_t u = 0; u < units.size(); ++u) {
    if (int(u % size_t(cluster.size())) != cluster.rank()) continue;
    identity[u] = unit_identity(plan, sources[units[u].source], units[u]);
    if (plan.resume) {
      if (auto r = read_checkpoint(checkpoint_path(plan, units[u], identity[u]), identity[u])) {
        results[u] = std::move(*r);
        ++stats.resumed;
        if (on_result) on_result(u, *results[u]);
        continue;
      }
    }
    todo.push_back(u);
  }

  SignalScope signals(plan.handle_signals);
  const std::vector<int> devices = plan.devices.empty() ? std::vector<int>{-1} : plan.devices;
  stats.workers = int(devices.size());
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex m;  // guards the fields below
  std::condition_variable cv;
  std::deque<std::pair<size_t, std::string>> finished;
  std::exception_ptr error;
  std::vector<double> reading(devices.size(), 0), computing(devices.size(), 0), waiting(devices.size(), 0);
  auto fail = [&](std::exception_ptr e) {
    std::lock_guard lock(m);
    if (!error) error = e;
    stop = true;
    cv.notify_all();
  };

  std::vector<std::unique_ptr<PieceQueue>> queues;
  for (size_t w = 0; w < devices.size(); ++w) queues.push_back(std::make_unique<PieceQueue>(plan.prefetch_bytes));
  std::vector<std::thread> threads;
  std::atomic<int> workers_left{int(devices.size())};
  for (size_t w = 0; w < devices.size(); ++w) {
    // Reader: takes the next unit to do and reads it piece by piece into this worker's queue.
    threads.emplace_back([&, w] {
      std::vector<std::shared_ptr<LayerKeys>> key_pool;
      try {
        while (!stop) {
          const size_t k = next++;
          if (k >= todo.size()) break;
          const size_t u = todo[k];
          const SampleSource& src = sources[units[u].source];
          auto t = Clock::now();
          std::unique_ptr<LayerReader> layer;
          std::shared_ptr<LayerKeys> keys = recycled_keys(key_pool);
          std::vector<int64_t> picked;
          {
            // Opening takes the HDF5 lock for its whole length; reads take it per HDF5 call (io/h5.hpp).
            std::lock_guard lock(h5::library_mutex());
            layer = std::make_unique<LayerReader>(src.reader->open_layer(src.sample->name, units[u].layer));
          }
          layer->read_keys_into(*keys);
          picked = pick_queries(layer->shape().queries, plan.max_queries);
          reading[w] += seconds_since(t);
          Piece first;
          first.unit = u;
          first.bytes = bytes_of(*keys);
          first.keys = std::move(keys);
          bool ok = queues[w]->push(std::move(first));
          for (size_t at = 0; ok && at < picked.size() && !stop; at += size_t(plan.batch)) {
            Piece p;
            p.unit = u;
            p.queries.assign(picked.begin() + ptrdiff_t(at), picked.begin() + ptrdiff_t(std::min(picked.size(), at + size_t(plan.batch))));
            t = Clock::now();
            p.batch = read_query_subset(*layer, p.queries);
            reading[w] += seconds_since(t);
            p.bytes = bytes_of(p.batch);
            ok = queues[w]->push(std::move(p));
          }
          {
            std::lock_guard lock(h5::library_mutex());
            layer.reset();
          }
          Piece end;
          end.unit = u;
          end.end = true;
          if (!ok || !queues[w]->push(std::move(end))) break;
        }
      } catch (...) {
        fail(std::current_exception());
      }
      queues[w]->close();
    });
    // Worker: computes the units its reader delivers.
    threads.emplace_back([&, w] {
      try {
        std::unique_ptr<UnitWorker> worker = make_worker(devices[w]);
        std::shared_ptr<const LayerKeys> keys;
        for (;;) {
          auto t = Clock::now();
          std::optional<Piece> p = queues[w]->pop();
          waiting[w] += seconds_since(t);
          if (!p || stop) break;
          t = Clock::now();
          if (p->keys) {
            keys = p->keys;
            worker->begin(units[p->unit], *keys);
          } else if (p->end) {
            std::string r = worker->finish();
            keys.reset();
            computing[w] += seconds_since(t);
            std::lock_guard lock(m);
            finished.emplace_back(p->unit, std::move(r));
            cv.notify_all();
            continue;
          } else {
            worker->add(p->batch, p->queries);
          }
          computing[w] += seconds_since(t);
        }
      } catch (...) {
        fail(std::current_exception());
      }
      queues[w]->cancel();  // a reader waiting on a full queue must not wait forever
      std::lock_guard lock(m);
      --workers_left;
      cv.notify_all();
    });
  }

  // This thread: checkpoints and on_result as units finish; polls for signals.
  std::exception_ptr main_error;
  for (;;) {
    std::unique_lock lock(m);
    cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return !finished.empty() || workers_left == 0 || error; });
    if (g_signalled || error) stop = true;
    if (stop) {
      for (auto& q : queues) q->cancel();
    }
    while (!finished.empty()) {
      auto [u, r] = std::move(finished.front());
      finished.pop_front();
      lock.unlock();
      try {
        if (!plan.checkpoint_dir.empty()) write_checkpoint(checkpoint_path(plan, units[u], identity[u]), identity[u], r);
        ++stats.computed_here;
        if (on_result) on_result(u, r);
      } catch (...) {
        if (!main_error) main_error = std::current_exception();
        stop = true;
        for (auto& q : queues) q->cancel();
      }
      results[u] = std::move(r);
      lock.lock();
    }
    if (workers_left == 0) break;
  }
  for (auto& t : threads) t.join();
  for (size_t w = 0; w < devices.size(); ++w) {
    stats.reading += reading[w];
    stats.computing += computing[w];
    stats.waiting += waiting[w];
  }
  if (error) std::rethrow_exception(error);
  if (main_error) std::rethrow_exception(main_error);
  if (g_signalled) {
    throw Interrupted("interrupted: " + std::to_string(stats.resumed + stats.computed_here) + " of this process's " +
                      std::to_string(stats.resumed + int64_t(todo.size())) + " units are done" +
                      (plan.checkpoint_dir.empty() ? std::string(" (use --checkpoint DIR to keep them)")
                                                   : "; rerun with --resume to continue from " + plan.checkpoint_dir));
  }

  std::vector<double> sums{stats.reading, stats.computing, stats.waiting, double(stats.resumed),
                           double(stats.computed_here), double(stats.workers)};
  cluster.sum_to_root(sums);
  cluster.gather(results);
  stats.wall = seconds_since(t0);
  if (cluster.rank() != 0) return {};
  stats.reading = sums[0], stats.computing = sums[1], stats.waiting = sums[2];
  stats.resumed = int64_t(sums[3]), stats.computed_here = int64_t(sums[4]), stats.workers = int(sums[5]);
  std::vector<std::string> out(units.size());
  for (size_t u = 0; u < units.size(); ++u) {
    if (!results[u]) throw std::logic_error("run_units: unit " + std::to_string(u) + " has no result");
    out[u] = std::move(*results[u]);
  }
  return out;
}

}  // namespace hisa
