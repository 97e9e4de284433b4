// icmpfwd_tun: a small Node-API binding for one Linux TUN device (IFF_TUN | IFF_NO_PI).
//
// Reads: the fd is non-blocking and watched by a uv_poll on the environment's own loop (a thread
// blocked in read() is never woken by close(), and the libuv thread pool stalls everything else:
// docs notes/tun-binding.md). Each wake-up drains up to batchSize packets and makes ONE JS call
// with one ArrayBuffer for the whole batch: batching is what makes the rate.
// Writes: one write() per packet (a TUN takes one packet per write; writev does not batch).
// Teardown: an async cleanup hook closes a still-open device when the environment (a worker
// thread, a vitest worker) goes away; an open uv handle there would abort the process.

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace {

// Bytes beyond the MTU in every read slot: with IFF_NO_PI a short buffer silently truncates.
constexpr uint32_t kHeadroom = 64;
constexpr uint32_t kDefaultBatch = 64;
constexpr uint32_t kMaxBatch = 4096;
constexpr uint32_t kMinMtu = 68;  // RFC 791: every IPv4 link carries 68 bytes
constexpr uint32_t kMaxMtu = 65535;
constexpr uint32_t kDefaultMtu = 1500;

// A failed system call on the open path; becomes a JS Error with code / errno / syscall / path.
struct SysError {
  int err;
  std::string syscall;
  std::string what;  // what we were doing, in words
  std::string path;
};

// A thrown-on-misuse option error; becomes a TypeError with code ERR_INVALID_ARG_VALUE.
struct OptionError {
  std::string message;
};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

Napi::Error ToJsError(Napi::Env env, const SysError& e) {
  Napi::Error error = Napi::Error::New(env, e.what + ": " + strerror(e.err));
  error.Set("code", Napi::String::New(env, uv_err_name(-e.err)));
  error.Set("errno", Napi::Number::New(env, -e.err));
  error.Set("syscall", Napi::String::New(env, e.syscall));
  if (!e.path.empty()) error.Set("path", Napi::String::New(env, e.path));
  return error;
}

// Moves the calling thread into a network namespace for its lifetime and always moves it back.
// setns(CLONE_NEWNET) is per thread, so the rest of the process never notices.
class NetnsScope {
 public:
  explicit NetnsScope(const std::string& path) {
    if (path.empty()) return;
    // thread-self, not self: in a worker thread "self" is the main thread's namespace.
    saved_.Reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (saved_.get() < 0) {
      throw SysError{errno, "open", "cannot open this thread's network namespace",
                     "/proc/thread-self/ns/net"};
    }
    Fd target(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (target.get() < 0) {
      throw SysError{errno, "open", "cannot open network namespace " + path, path};
    }
    if (::setns(target.get(), CLONE_NEWNET) < 0) {
      throw SysError{errno, "setns", "cannot enter network namespace " + path, path};
    }
    entered_ = true;
  }
  ~NetnsScope() {
    // Carrying on in the wrong namespace would silently misroute everything after: abort.
    if (entered_ && ::setns(saved_.get(), CLONE_NEWNET) < 0) {
      Napi::Error::Fatal("icmpfwd_tun", "cannot return to the original network namespace");
    }
  }
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

 private:
  Fd saved_;
  bool entered_ = false;
};

struct OpenParams {
  std::string name;
  uint32_t mtu = kDefaultMtu;  // 0 with attach: keep the device's MTU
  bool attach = false;
  std::string netns;
  uint32_t batch = kDefaultBatch;
};

struct Opened {
  int fd;
  std::string name;
  uint32_t mtu;
};

void CopyName(struct ifreq* ifr, const std::string& name) {
  memset(ifr, 0, sizeof(*ifr));
  memcpy(ifr->ifr_name, name.data(), name.size());  // size < IFNAMSIZ, checked by the caller
}

// Opens the device in the calling thread's current network namespace.
Opened OpenHere(const OpenParams& p) {
  // TUNSETIFF on a missing name creates a device and on an existing one attaches to it, so the
  // mode the caller asked for is enforced here, before the ioctl.
  errno = 0;
  unsigned index = if_nametoindex(p.name.c_str());
  if (index == 0 && errno != ENODEV && errno != 0) {
    throw SysError{errno, "if_nametoindex", "cannot look up network device " + p.name, ""};
  }
  if (p.attach && index == 0) {
    throw SysError{ENODEV, "if_nametoindex",
                   "no network device named " + p.name + " to attach to", ""};
  }
  if (!p.attach && index != 0) {
    throw SysError{EEXIST, "if_nametoindex", "a network device named " + p.name + " already exists",
                   ""};
  }

  Fd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) throw SysError{errno, "open", "cannot open /dev/net/tun", "/dev/net/tun"};

  struct ifreq ifr;
  CopyName(&ifr, p.name);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
    throw SysError{errno, "ioctl", "TUNSETIFF " + p.name + " failed", ""};
  }
  std::string name(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));

  // MTU and IFF_UP go through an ordinary socket of this namespace. Only change what differs:
  // an unprivileged owner of a persistent device can use it when an admin set it up already.
  Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) throw SysError{errno, "socket", "cannot create a configuration socket", ""};

  CopyName(&ifr, name);
  if (::ioctl(sock.get(), SIOCGIFMTU, &ifr) < 0) {
    throw SysError{errno, "ioctl", "SIOCGIFMTU " + name + " failed", ""};
  }
  uint32_t current = static_cast<uint32_t>(ifr.ifr_mtu);
  uint32_t mtu = p.mtu == 0 ? current : p.mtu;
  if (mtu != current) {
    CopyName(&ifr, name);
    ifr.ifr_mtu = static_cast<int>(mtu);
    if (::ioctl(sock.get(), SIOCSIFMTU, &ifr) < 0) {
      throw SysError{errno, "ioctl",
                     "cannot set the MTU of " + name + " to " + std::to_string(mtu) +
                         " (it is " + std::to_string(current) + ")",
                     ""};
    }
  }

  CopyName(&ifr, name);
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) < 0) {
    throw SysError{errno, "ioctl", "SIOCGIFFLAGS " + name + " failed", ""};
  }
  if ((ifr.ifr_flags & IFF_UP) == 0) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) < 0) {
      throw SysError{errno, "ioctl", "cannot bring " + name + " up", ""};
    }
  }
  return Opened{fd.Release(), name, mtu};
}

bool ValidIfName(const std::string& n) {
  if (n.empty() || n.size() >= IFNAMSIZ || n == "." || n == "..") return false;
  for (char c : n) {
    // The kernel refuses '/', ':' and whitespace; '%' would make it pick a name for us.
    if (c == '/' || c == ':' || c == '%' || c <= ' ' || c > '~') return false;
  }
  return true;
}

uint32_t GetUint(const Napi::Object& o, const char* key, uint32_t fallback, uint32_t lo,
                 uint32_t hi) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw OptionError{std::string(key) + " must be a number"};
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    throw OptionError{std::string(key) + " must be an integer in " + std::to_string(lo) + ".." +
                      std::to_string(hi)};
  }
  return static_cast<uint32_t>(d);
}

OpenParams ParseOptions(const Napi::Value& value) {
  if (!value.IsObject()) throw OptionError{"options must be an object"};
  Napi::Object o = value.As<Napi::Object>();
  OpenParams p;
  Napi::Value name = o.Get("name");
  if (!name.IsString()) throw OptionError{"name must be a string"};
  p.name = name.As<Napi::String>().Utf8Value();
  if (!ValidIfName(p.name)) {
    throw OptionError{"name must be 1-15 printable characters without '/', ':', '%' or spaces"};
  }
  Napi::Value attach = o.Get("attach");
  if (!attach.IsUndefined()) {
    if (!attach.IsBoolean()) throw OptionError{"attach must be a boolean"};
    p.attach = attach.As<Napi::Boolean>().Value();
  }
  p.mtu = GetUint(o, "mtu", p.attach ? 0 : kDefaultMtu, p.attach ? 0 : kMinMtu, kMaxMtu);
  if (p.mtu != 0 && p.mtu < kMinMtu) throw OptionError{"mtu must be at least 68"};
  p.batch = GetUint(o, "batchSize", kDefaultBatch, 1, kMaxBatch);
  Napi::Value netns = o.Get("netns");
  if (!netns.IsUndefined() && !netns.IsNull()) {
    if (!netns.IsString()) throw OptionError{"netns must be a path string"};
    p.netns = netns.As<Napi::String>().Utf8Value();
    if (p.netns.empty()) throw OptionError{"netns must not be empty"};
  }
  return p;
}

class Tun : public Napi::ObjectWrap<Tun> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Tun",
                       {
                           InstanceMethod<&Tun::Write>("write"),
                           InstanceMethod<&Tun::Close>("close"),
                           InstanceAccessor<&Tun::GetName>("name"),
                           InstanceAccessor<&Tun::GetMtu>("mtu"),
                           InstanceAccessor<&Tun::GetBatchSize>("batchSize"),
                           InstanceAccessor<&Tun::GetClosed>("closed"),
                           InstanceAccessor<&Tun::GetReadErrors>("readErrors"),
                           InstanceAccessor<&Tun::GetTruncated>("truncated"),
                       });
  }

  // open(options, onBatch(slab, lengths), onError?(error)) -> Tun. Everything that can fail
  // with an errno happens before a JS object exists.
  static Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OpenParams params;
    try {
      params = ParseOptions(info[0]);
    } catch (const OptionError& e) {
      Napi::TypeError error = Napi::TypeError::New(env, e.message);
      error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
      throw error;
    }
    if (!info[1].IsFunction()) {
      Napi::TypeError error = Napi::TypeError::New(env, "onBatch must be a function");
      error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
      throw error;
    }
    Opened opened;
    try {
      NetnsScope scope(params.netns);
      opened = OpenHere(params);
    } catch (const SysError& e) {
      throw ToJsError(env, e);
    }
    Fd fd(opened.fd);
    Napi::Object object = env.GetInstanceData<Napi::FunctionReference>()->New({});
    Tun* tun = Unwrap(object);
    tun->Start(env, fd.Release(), opened.name, opened.mtu, params.batch,
               info[1].As<Napi::Function>(),
               info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function());
    return object;
  }

  explicit Tun(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tun>(info) {}

  ~Tun() override { Shutdown(true); }

 private:
  // The poll handle outlives the Tun until libuv's close callback; it also carries the cleanup
  // hook handle, which may only be removed once the handle is closed.
  struct Poller {
    uv_poll_t handle;
    napi_async_cleanup_hook_handle hook = nullptr;
    Tun* owner = nullptr;
  };

  void Start(Napi::Env env, int fd, const std::string& name, uint32_t mtu, uint32_t batch,
             Napi::Function onBatch, Napi::Function onError) {
    fd_ = fd;
    name_ = name;
    mtu_ = mtu;
    batch_ = batch;
    slot_ = mtu + kHeadroom;
    scratch_.resize(static_cast<size_t>(batch_) * slot_);
    lengths_.resize(batch_);
    onBatch_ = Napi::Persistent(onBatch);
    if (!onError.IsEmpty()) onError_ = Napi::Persistent(onError);
    async_ = std::make_unique<Napi::AsyncContext>(env, "icmpfwd:tun");

    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      Shutdown(false);
      throw Napi::Error::New(env, "cannot get the event loop");
    }
    auto* poller = new Poller();
    poller->owner = this;
    poller->handle.data = poller;
    int rc = uv_poll_init(loop, &poller->handle, fd_);
    if (rc < 0) {
      delete poller;  // never initialised: nothing for libuv to close
      Shutdown(false);
      throw ToJsError(env, SysError{-rc, "uv_poll_init", "cannot watch the TUN fd", ""});
    }
    poller_ = poller;
    if (napi_add_async_cleanup_hook(env, OnTeardown, poller, &poller->hook) != napi_ok) {
      poller->hook = nullptr;
      Shutdown(false);
      throw Napi::Error::New(env, "cannot register the environment cleanup hook");
    }
    rc = uv_poll_start(&poller->handle, UV_READABLE, OnPoll);
    if (rc < 0) {
      Shutdown(false);
      throw ToJsError(env, SysError{-rc, "uv_poll_start", "cannot watch the TUN fd", ""});
    }
    // An open device must not be collected from under its reader: closing is explicit.
    Ref();
    referenced_ = true;
  }

  // Stops reading, releases the poll handle and closes the fd (the kernel removes a
  // non-persistent device right here). fromTeardown: no JS may run and no references may be
  // touched (environment teardown or the finaliser).
  void Shutdown(bool fromTeardown) {
    if (poller_ != nullptr) {
      uv_poll_stop(&poller_->handle);
      poller_->owner = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(&poller_->handle), OnPollClosed);
      poller_ = nullptr;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (referenced_ && !fromTeardown) {
      referenced_ = false;
      Unref();
    }
  }

  static void OnPollClosed(uv_handle_t* handle) {
    auto* poller = static_cast<Poller*>(handle->data);
    if (poller->hook != nullptr) napi_remove_async_cleanup_hook(poller->hook);
    delete poller;
  }

  static void OnTeardown(napi_async_cleanup_hook_handle, void* arg) {
    auto* poller = static_cast<Poller*>(arg);
    // With no owner a close is already under way; its callback removes this hook.
    if (poller->owner != nullptr) poller->owner->Shutdown(true);
  }

  // Everything reached from here on runs from libuv, outside any JS call, and uses raw Node-API
  // with checked statuses: when a worker is being terminated its loop still finishes the current
  // iteration while JS can no longer run, every Node-API call fails, and node-addon-api's
  // wrappers would throw or even abort (Napi::Error::New is fatal when it cannot build the
  // error). Then the batch is dropped and the cleanup hook closes the device.
  static void OnPoll(uv_poll_t* handle, int status, int) {
    Tun* self = static_cast<Poller*>(handle->data)->owner;
    if (self == nullptr) return;
    if (status < 0) {
      // libuv already stopped the handle (POLLERR: e.g. the device was deleted under us).
      self->Fail(-status, "poll", "the TUN fd reported an error");
      return;
    }
    self->ReadBatch();
  }

  void ReadBatch() {
    uint32_t count = 0;
    size_t used = 0;
    int fatal = 0;
    while (count < batch_) {
      ssize_t n = ::read(fd_, scratch_.data() + used, slot_);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        readErrors_ += 1;
        // EBADFD: the device was detached / deleted; polling again would spin.
        if (errno == EBADFD) fatal = errno;
        break;
      }
      if (n == 0) break;
      if (static_cast<size_t>(n) == slot_) truncated_ += 1;
      lengths_[count++] = static_cast<uint32_t>(n);
      used += static_cast<size_t>(n);
    }
    // When the batch filled up, the level-triggered poll fires again on the next loop turn:
    // other I/O gets its turn in between.
    if (count > 0) Deliver(count, used);
    if (fatal != 0 && fd_ >= 0) Fail(fatal, "read", "reading from " + name_ + " failed");
  }

  // One ArrayBuffer per batch: [count × u32 length][packet bytes…]; JS makes views into it.
  void Deliver(uint32_t count, size_t used) {
    napi_env env = Env();
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    size_t header = static_cast<size_t>(count) * sizeof(uint32_t);
    void* data = nullptr;
    napi_value slab;
    napi_value lengths;
    if (napi_create_arraybuffer(env, header + used, &data, &slab) == napi_ok &&
        napi_create_typedarray(env, napi_uint32_array, count, slab, 0, &lengths) == napi_ok) {
      auto* bytes = static_cast<uint8_t*>(data);
      memcpy(bytes, lengths_.data(), header);
      memcpy(bytes + header, scratch_.data(), used);
      napi_value args[2] = {slab, lengths};
      Call(onBatch_, 2, args);
    }
    napi_close_handle_scope(env, scope);
  }

  void Fail(int err, const char* syscall, const std::string& what) {
    if (poller_ != nullptr) uv_poll_stop(&poller_->handle);
    if (onError_.IsEmpty()) return;
    napi_env env = Env();
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    std::string message = what + ": " + strerror(err);
    napi_value text, error, code, syscallName;
    if (napi_create_string_utf8(env, message.c_str(), message.size(), &text) == napi_ok &&
        napi_create_error(env, nullptr, text, &error) == napi_ok &&
        napi_create_string_utf8(env, uv_err_name(-err), NAPI_AUTO_LENGTH, &code) == napi_ok &&
        napi_set_named_property(env, error, "code", code) == napi_ok &&
        napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscallName) == napi_ok &&
        napi_set_named_property(env, error, "syscall", syscallName) == napi_ok) {
      Call(onError_, 1, &error);
    }
    napi_close_handle_scope(env, scope);
  }

  // napi_make_callback runs the nextTick and microtask queues afterwards, as for any libuv
  // callback. A throwing callback becomes an uncaught exception, like a throwing listener.
  void Call(Napi::FunctionReference& fn, size_t argc, const napi_value* argv) {
    napi_env env = Env();
    napi_value function;
    napi_value self;
    napi_value result;
    if (napi_get_reference_value(env, fn, &function) != napi_ok || function == nullptr) return;
    if (napi_get_reference_value(env, static_cast<napi_ref>(*this), &self) != napi_ok ||
        self == nullptr) {
      return;
    }
    napi_status status = napi_make_callback(env, static_cast<napi_async_context>(*async_), self,
                                            function, argc, argv, &result);
    bool pending = false;
    if (status != napi_ok && napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value exception;
      // Fails harmlessly (no JS can run) when the pending "exception" is a termination.
      if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) {
        napi_fatal_exception(env, exception);
      }
    }
  }

  // The hot path of every reply: one typed-array lookup, one write(2), no allocation.
  Napi::Value Write(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    napi_typedarray_type type = napi_int8_array;
    size_t length = 0;
    void* data = nullptr;
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        napi_get_typedarray_info(env, info[0], &type, &length, &data, nullptr, nullptr) !=
            napi_ok ||
        type != napi_uint8_array) {
      throw Napi::TypeError::New(env, "write() takes a Uint8Array");
    }
    ssize_t n = -EBADF;
    if (fd_ >= 0) {
      do {
        n = ::write(fd_, data, length);
      } while (n < 0 && errno == EINTR);
      if (n < 0) n = -errno;
    }
    return Napi::Number::New(env, static_cast<double>(n));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown(false);
    return info.Env().Undefined();
  }

  Napi::Value GetName(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), name_);
  }
  Napi::Value GetMtu(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), mtu_); }
  Napi::Value GetBatchSize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), batch_);
  }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), fd_ < 0);
  }
  Napi::Value GetReadErrors(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), readErrors_);
  }
  Napi::Value GetTruncated(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), truncated_);
  }

  Poller* poller_ = nullptr;
  int fd_ = -1;
  std::string name_;
  uint32_t mtu_ = 0;
  uint32_t batch_ = 0;
  size_t slot_ = 0;
  std::vector<uint8_t> scratch_;
  std::vector<uint32_t> lengths_;
  Napi::FunctionReference onBatch_;
  Napi::FunctionReference onError_;
  std::unique_ptr<Napi::AsyncContext> async_;
  double readErrors_ = 0;
  double truncated_ = 0;  // reads that filled a whole slot: the MTU was raised under us
  bool referenced_ = false;
};

// glibc keeps memory freed by many short-lived connections in its arenas (measured: 100 MB held,
// 34 MB in use after 5,000 sessions); malloc_trim hands what is free back to the kernel.
Napi::Value TrimMemory(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Per environment (main thread and each worker), never process-global.
  env.SetInstanceData(new Napi::FunctionReference(Napi::Persistent(Tun::Define(env))));
  exports.Set("open", Napi::Function::New<Tun::Open>(env, "open"));
  exports.Set("headroom", Napi::Number::New(env, kHeadroom));
  exports.Set("trimMemory", Napi::Function::New(env, TrimMemory, "trimMemory"));
  return exports;
}

}  // namespace

NODE_API_MODULE(icmpfwd_tun, Init)
