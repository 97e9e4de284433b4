// icmpfwd_icmp: a small Node-API binding for one ICMP socket (IPv4 or IPv6), for the relay policy.
//
// Raw (SOCK_RAW, needs CAP_NET_RAW): every ICMP message of the family arrives, IPv4 ones with
// their IP header; routers' errors are ordinary messages. Datagram (SOCK_DGRAM + IPPROTO_ICMP /
// IPPROTO_ICMPV6, the kernel's unprivileged ping sockets, net.ipv4.ping_group_range): only the
// Echo Replies to this socket's ident arrive; with IP_RECVERR / IPV6_RECVERR a router's error
// about one of its requests lands in the socket's error queue (MSG_ERRQUEUE), with the
// offender's address, the ICMP type and code, and the quoted Echo Request.
//
// The fd is non-blocking and watched by a uv_poll on the environment's loop. libuv treats
// POLLERR — which epoll reports whenever the error queue is non-empty — as fatal and stops the
// handle: we drain the queue and start the handle again. Every wake-up reads at most kBatch
// messages (level-triggered: the rest on the next turn), so a flood cannot starve the loop.

#include <napi.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr int kBatch = 64;
constexpr size_t kBuffer = 65536;

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& what) {
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  e.Set("code", Napi::String::New(env, uv_err_name(-err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

std::string AddressText(const sockaddr_storage& a) {
  char text[INET6_ADDRSTRLEN] = "";
  if (a.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, text, sizeof text);
  } else if (a.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, text, sizeof text);
  }
  return text;
}

class IcmpSocket : public Napi::ObjectWrap<IcmpSocket> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "IcmpSocket",
                       {
                           InstanceMethod<&IcmpSocket::Send>("send"),
                           InstanceMethod<&IcmpSocket::Close>("close"),
                           InstanceAccessor<&IcmpSocket::GetClosed>("closed"),
                       });
  }

  // open(family 4|6, raw, onMessage(data, from, errorType, errorCode)) -> IcmpSocket.
  // errorType is -1 for an ordinary message; else the message came from the error queue: the
  // ICMP type and code of the error `from` (the offender) sent, and data is the quoted request.
  static Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsBoolean() ||
        !info[2].IsFunction()) {
      throw Napi::TypeError::New(env, "open(family: 4 | 6, raw: boolean, onMessage: Function)");
    }
    int family = info[0].As<Napi::Number>().Int32Value();
    if (family != 4 && family != 6) throw Napi::TypeError::New(env, "family must be 4 or 6");
    bool raw = info[1].As<Napi::Boolean>().Value();
    bool v6 = family == 6;
    int fd = ::socket(v6 ? AF_INET6 : AF_INET,
                      (raw ? SOCK_RAW : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      v6 ? static_cast<int>(IPPROTO_ICMPV6) : static_cast<int>(IPPROTO_ICMP));
    if (fd < 0) {
      throw ErrnoError(env, errno, "socket",
                       std::string("cannot open a ") + (raw ? "raw" : "datagram") + " ICMP" +
                           (v6 ? "v6" : "") + " socket");
    }
    int one = 1;
    int rc = 0;
    if (!raw) {
      // The error queue: what lets an unprivileged relay see the routers' errors.
      rc = v6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof one)
              : setsockopt(fd, IPPROTO_IP, IP_RECVERR, &one, sizeof one);
    } else if (v6) {
      // Echo Replies and errors only: not every Neighbor Discovery message of the host.
      icmp6_filter filter;
      ICMP6_FILTER_SETBLOCKALL(&filter);
      for (int t : {ICMP6_ECHO_REPLY, ICMP6_DST_UNREACH, ICMP6_TIME_EXCEEDED, ICMP6_PARAM_PROB}) {
        ICMP6_FILTER_SETPASS(t, &filter);
      }
      rc = setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter);
    }
    if (rc < 0) {
      int err = errno;
      ::close(fd);
      throw ErrnoError(env, err, "setsockopt", "cannot configure the ICMP socket");
    }
    Napi::Object object = env.GetInstanceData<Napi::FunctionReference>()->New({});
    IcmpSocket* self = Unwrap(object);
    self->Start(env, fd, v6, raw, info[2].As<Napi::Function>());
    return object;
  }

  explicit IcmpSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<IcmpSocket>(info) {}
  ~IcmpSocket() override { Shutdown(true); }

 private:
  // The poll handle outlives the socket until libuv's close callback; it carries the cleanup
  // hook, which may only be removed once the handle is closed.
  struct Poller {
    uv_poll_t handle;
    napi_async_cleanup_hook_handle hook = nullptr;
    IcmpSocket* owner = nullptr;
  };

  void Start(Napi::Env env, int fd, bool v6, bool raw, Napi::Function onMessage) {
    fd_ = fd;
    v6_ = v6;
    raw_ = raw;
    buffer_.resize(kBuffer);
    onMessage_ = Napi::Persistent(onMessage);
    async_ = std::make_unique<Napi::AsyncContext>(env, "icmpfwd:icmp");
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
      delete poller;
      Shutdown(false);
      throw ErrnoError(env, -rc, "uv_poll_init", "cannot watch the ICMP socket");
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
      throw ErrnoError(env, -rc, "uv_poll_start", "cannot watch the ICMP socket");
    }
    // An open socket must not be collected from under its reader: closing is explicit.
    Ref();
    referenced_ = true;
  }

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
    if (poller->owner != nullptr) poller->owner->Shutdown(true);
  }

  static void OnPoll(uv_poll_t* handle, int status, int) {
    IcmpSocket* self = static_cast<Poller*>(handle->data)->owner;
    if (self == nullptr || self->fd_ < 0) return;
    // UV_EBADF here is POLLERR (an error queued), and libuv has stopped the handle.
    self->ReadBatch();
    if (status < 0 && self->poller_ != nullptr) {
      uv_poll_start(&self->poller_->handle, UV_READABLE, OnPoll);
    }
  }

  void ReadBatch() {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    // The error queue (empty on a raw socket, which gets errors as ordinary messages).
    for (int i = 0; i < kBatch && fd_ >= 0 && ReadError(env); i++) {
    }
    // A queued error also sets the socket's pending error (so_error): clear it, or the next send
    // or read fails with it and epoll keeps reporting POLLERR (a busy loop of restarts).
    int pending = 0;
    socklen_t len = sizeof pending;
    if (fd_ >= 0) getsockopt(fd_, SOL_SOCKET, SO_ERROR, &pending, &len);
    for (int i = 0; i < kBatch && fd_ >= 0; i++) {
      sockaddr_storage from{};
      socklen_t fromLen = sizeof from;
      ssize_t n = recvfrom(fd_, buffer_.data(), buffer_.size(), 0,
                           reinterpret_cast<sockaddr*>(&from), &fromLen);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        continue;  // a pending error (e.g. EHOSTUNREACH) is reported once, then cleared
      }
      Deliver(env, static_cast<size_t>(n), AddressText(from), -1, -1);
    }
  }

  // One message from the error queue; false when it is empty.
  bool ReadError(Napi::Env env) {
    sockaddr_storage target{};
    char control[512];
    iovec iov{buffer_.data(), buffer_.size()};
    msghdr msg{};
    msg.msg_name = &target;
    msg.msg_namelen = sizeof target;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd_, &msg, MSG_ERRQUEUE);
    if (n < 0) return errno == EINTR;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      bool isError = (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR) ||
                     (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR);
      if (!isError) continue;
      auto* ee = reinterpret_cast<sock_extended_err*>(CMSG_DATA(c));
      if (ee->ee_origin != SO_EE_ORIGIN_ICMP && ee->ee_origin != SO_EE_ORIGIN_ICMP6) continue;
      sockaddr_storage offender{};
      const sockaddr* o = SO_EE_OFFENDER(ee);
      memcpy(&offender, o,
             o->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
      Deliver(env, static_cast<size_t>(n), AddressText(offender), ee->ee_type, ee->ee_code);
    }
    return true;
  }

  void Deliver(Napi::Env env, size_t n, const std::string& from, int type, int code) {
    Napi::Buffer<uint8_t> data = Napi::Buffer<uint8_t>::Copy(env, buffer_.data(), n);
    napi_value args[4] = {data, Napi::String::New(env, from), Napi::Number::New(env, type),
                          Napi::Number::New(env, code)};
    napi_value result;
    napi_status status = napi_make_callback(env, static_cast<napi_async_context>(*async_),
                                            Value(), onMessage_.Value(), 4, args, &result);
    bool pending = false;
    if (status != napi_ok && napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value exception;
      if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) {
        napi_fatal_exception(env, exception);
      }
    }
  }

  // send(data, destination, ttl): one Echo Request with this TTL / hop limit. Throws the errno.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsString() ||
        !info[2].IsNumber()) {
      throw Napi::TypeError::New(env, "send(data: Uint8Array, destination: string, ttl: number)");
    }
    if (fd_ < 0) throw ErrnoError(env, EBADF, "sendto", "the ICMP socket is closed");
    Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
    std::string destination = info[1].As<Napi::String>().Utf8Value();
    int ttl = info[2].As<Napi::Number>().Int32Value();
    if (ttl < 1 || ttl > 255) throw Napi::RangeError::New(env, "ttl must be 1..255");
    sockaddr_storage to{};
    socklen_t toLen;
    if (v6_) {
      auto& a = reinterpret_cast<sockaddr_in6&>(to);
      a.sin6_family = AF_INET6;
      if (inet_pton(AF_INET6, destination.c_str(), &a.sin6_addr) != 1) {
        throw Napi::TypeError::New(env, "not an IPv6 address: " + destination);
      }
      toLen = sizeof a;
    } else {
      auto& a = reinterpret_cast<sockaddr_in&>(to);
      a.sin_family = AF_INET;
      if (inet_pton(AF_INET, destination.c_str(), &a.sin_addr) != 1) {
        throw Napi::TypeError::New(env, "not an IPv4 address: " + destination);
      }
      toLen = sizeof a;
    }
    // A router's error about an earlier probe also left a pending socket error, which would
    // fail this send: it was reported through the error queue already.
    int pending = 0;
    socklen_t pendingLen = sizeof pending;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &pending, &pendingLen);
    // One thread sends: setting the TTL and sending cannot interleave with another probe's.
    int rc = v6_ ? setsockopt(fd_, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof ttl)
                 : setsockopt(fd_, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
    if (rc < 0) throw ErrnoError(env, errno, "setsockopt", "cannot set the TTL");
    ssize_t n;
    do {
      n = sendto(fd_, data.Data(), data.ByteLength(), 0, reinterpret_cast<sockaddr*>(&to),
                 toLen);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw ErrnoError(env, errno, "sendto", "cannot send to " + destination);
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown(false);
    return info.Env().Undefined();
  }

  Napi::Value GetClosed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), fd_ < 0);
  }

  Poller* poller_ = nullptr;
  int fd_ = -1;
  bool v6_ = false;
  bool raw_ = false;
  std::vector<uint8_t> buffer_;
  Napi::FunctionReference onMessage_;
  std::unique_ptr<Napi::AsyncContext> async_;
  bool referenced_ = false;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new Napi::FunctionReference(Napi::Persistent(IcmpSocket::Define(env))));
  exports.Set("open", Napi::Function::New<IcmpSocket::Open>(env, "open"));
  return exports;
}

}  // namespace

NODE_API_MODULE(icmpfwd_icmp, Init)
