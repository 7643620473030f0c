// qaccel co-simulation harness: a Verilated design behind a byte link, with no Python per cycle.
//
// The design follows the port contract of docs/COSIM.md: clk, rst (synchronous, active high),
// and either byte streams (rx: host to device, tx: device to host, Amaranth lib.stream ports)
// or UART pins (uart_rx, uart_tx at a fixed number of clocks per bit), plus `busy`. Bytes move
// between the design and one host link: an inherited socket (--fd), a TCP connection
// (--listen) or a pseudo-terminal (--pty). The simulation is clocked only while something is
// in flight or the design is busy; otherwise the harness blocks in ppoll() and uses no CPU.
//
// The build (qaccel.sim.cosim.build_cosim) wraps the design in a module that holds its rst
// high for the first cycles, and generates cosim_ports.h, which names the Verilated class
// members of the ports (Verilator mangles "__" into "___05F") and the build options.
//
// Machine-readable lines, each starting with "QACCEL-COSIM ":
//   stdout, once the link is set up:  LISTEN <host>:<port> | PTY <path> | FD <n>
//   stderr at exit, and on the control channel for "stats"/"idle" requests:
//     STATS reason=<why> cycles=... busy_cycles=... bytes_in=... bytes_out=... ...
#include "cosim_ports.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "verilated.h"
#include QACCEL_COSIM_TOP_HEADER
#if QACCEL_COSIM_TRACE
#if QACCEL_COSIM_TRACE_FST
#include "verilated_fst_c.h"
using TraceFile = VerilatedFstC;
#else
#include "verilated_vcd_c.h"
using TraceFile = VerilatedVcdC;
#endif
#endif
#if QACCEL_COSIM_UART
#include "cosim_uart.h"
#endif

namespace {

constexpr const char* kTag = "QACCEL-COSIM";
constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitMaxCycles = 3;

volatile sig_atomic_t g_stop_signal = 0;
volatile sig_atomic_t g_stats_signal = 0;

void on_stop_signal(int signo) { g_stop_signal = signo; }
void on_stats_signal(int) { g_stats_signal = 1; }

[[noreturn]] void fail(int code, const char* format, ...) {
    va_list args;
    va_start(args, format);
    std::fprintf(stderr, "%s ERROR ", kTag);
    std::vfprintf(stderr, format, args);
    std::fputc('\n', stderr);
    va_end(args);
    std::exit(code);
}

// A byte FIFO that can be filled straight from read() and drained straight by write().
class ByteQueue {
 public:
    size_t size() const { return tail_ - head_; }
    bool empty() const { return head_ == tail_; }
    uint8_t front() const { return buf_[head_]; }
    void pop() {
        if (++head_ == tail_) head_ = tail_ = 0;
    }
    void push(uint8_t byte) {
        if (tail_ == buf_.size()) make_room(1);
        buf_[tail_++] = byte;
    }
    const uint8_t* data() const { return buf_.data() + head_; }
    void consume(size_t count) {
        head_ += count;
        if (head_ == tail_) head_ = tail_ = 0;
    }
    uint8_t* reserve(size_t count) {
        if (buf_.size() - tail_ < count) make_room(count);
        return buf_.data() + tail_;
    }
    void commit(size_t count) { tail_ += count; }

 private:
    void make_room(size_t count) {
        if (head_ != 0) {  // slide the live bytes to the front first
            std::memmove(buf_.data(), buf_.data() + head_, tail_ - head_);
            tail_ -= head_;
            head_ = 0;
        }
        if (buf_.size() - tail_ < count) buf_.resize(std::max(buf_.size() * 2, tail_ + count + 4096));
    }
    std::vector<uint8_t> buf_;
    size_t head_ = 0;
    size_t tail_ = 0;
};

struct Options {
    std::string listen;           // host:port
    int data_fd = -1;
    bool pty = false;
    std::string pty_link;
    int control_fd = -1;
    std::string stats_path;
    std::string trace_path;
    uint64_t max_cycles = 0;      // 0: no limit
    uint64_t poll_cycles = 4096;  // cycles between two non-blocking I/O checks
    uint64_t grace_cycles = 64;   // cycles still clocked after the last sign of activity
    uint32_t clocks_per_bit = QACCEL_COSIM_CLOCKS_PER_BIT;
    uint32_t gap_bits = 0;
};

const char kUsage[] =
    "usage: %s (--fd N | --listen HOST:PORT | --pty [--pty-link PATH]) [options]\n"
    "  --fd N               host link: an inherited, connected socket (e.g. a socketpair end)\n"
    "  --listen HOST:PORT   host link: accept one TCP connection (port 0: any free port)\n"
    "  --pty                host link: a new pseudo-terminal (open it like a serial port)\n"
    "  --pty-link PATH      also make PATH a symlink to the pseudo-terminal\n"
    "  --control-fd N       line commands: stats, idle (reply once idle), quit; EOF exits\n"
    "  --stats FILE         write JSON statistics at exit and on SIGUSR1\n"
    "  --max-cycles N       stop (exit code 3) after N simulated cycles\n"
    "  --poll-cycles N      cycles between link checks while running (default 4096)\n"
    "  --grace-cycles N     cycles clocked after the last activity before idling (default 64)\n"
    "  --clocks-per-bit N   UART designs: clock cycles per bit (default from the build)\n"
    "  --uart-gap-bits N    UART designs: idle bits after each stop bit sent (default 0)\n"
    "  --trace FILE         record a waveform (only in builds made with tracing)\n";

uint64_t parse_number(const char* option, const char* text) {
    char* end = nullptr;
    errno = 0;
    unsigned long long value = std::strtoull(text, &end, 0);
    if (errno || end == text || *end || text[0] == '-')
        fail(kExitUsage, "%s needs a non-negative integer, not '%s'", option, text);
    return value;
}

Options parse_options(int argc, char** argv) {
    Options opts;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) fail(kExitUsage, "%s needs a value", arg.c_str());
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            std::printf(kUsage, argv[0]);
            std::exit(kExitOk);
        } else if (arg == "--fd") {
            opts.data_fd = static_cast<int>(parse_number("--fd", value()));
        } else if (arg == "--listen") {
            opts.listen = value();
        } else if (arg == "--pty") {
            opts.pty = true;
        } else if (arg == "--pty-link") {
            opts.pty_link = value();
        } else if (arg == "--control-fd") {
            opts.control_fd = static_cast<int>(parse_number("--control-fd", value()));
        } else if (arg == "--stats") {
            opts.stats_path = value();
        } else if (arg == "--trace") {
            opts.trace_path = value();
        } else if (arg == "--max-cycles") {
            opts.max_cycles = parse_number("--max-cycles", value());
        } else if (arg == "--poll-cycles") {
            opts.poll_cycles = parse_number("--poll-cycles", value());
            if (opts.poll_cycles == 0) fail(kExitUsage, "--poll-cycles must be at least 1");
        } else if (arg == "--grace-cycles") {
            opts.grace_cycles = parse_number("--grace-cycles", value());
        } else if (arg == "--clocks-per-bit") {
            opts.clocks_per_bit = static_cast<uint32_t>(parse_number("--clocks-per-bit", value()));
        } else if (arg == "--uart-gap-bits") {
            opts.gap_bits = static_cast<uint32_t>(parse_number("--uart-gap-bits", value()));
        } else if (arg.rfind("+verilator+", 0) == 0) {
            // Verilator runtime options, handled by the VerilatedContext
        } else {
            fail(kExitUsage, "unknown option '%s' (see --help)", arg.c_str());
        }
    }
    int links = (opts.data_fd >= 0) + !opts.listen.empty() + opts.pty;
    if (links != 1) fail(kExitUsage, "give exactly one of --fd, --listen, --pty (see --help)");
    if (!opts.pty_link.empty() && !opts.pty) fail(kExitUsage, "--pty-link needs --pty");
#if !QACCEL_COSIM_TRACE
    if (!opts.trace_path.empty())
        fail(kExitUsage,
             "--trace: this co-simulation was built without tracing "
             "(build it with build_cosim(..., trace=True))");
#endif
#if QACCEL_COSIM_UART
    if (opts.clocks_per_bit < 4) fail(kExitUsage, "--clocks-per-bit must be at least 4");
#else
    if (opts.clocks_per_bit != QACCEL_COSIM_CLOCKS_PER_BIT)
        fail(kExitUsage, "--clocks-per-bit applies to UART designs only");
#endif
    return opts;
}

void set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        fail(kExitError, "fd %d: cannot make it non-blocking: %s", fd, std::strerror(errno));
}

int open_listener(const std::string& spec, std::string* bound) {
    size_t colon = spec.rfind(':');
    if (colon == std::string::npos)
        fail(kExitUsage, "--listen needs HOST:PORT, not '%s'", spec.c_str());
    std::string host = spec.substr(0, colon), port = spec.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
    if (rc != 0) fail(kExitUsage, "--listen %s: %s", spec.c_str(), gai_strerror(rc));
    int fd = -1;
    std::string last_error = "no address";
    for (addrinfo* ai = found; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1) == 0) break;
        last_error = std::strerror(errno);
        close(fd);
        fd = -1;
    }
    freeaddrinfo(found);
    if (fd < 0) fail(kExitError, "--listen %s: %s", spec.c_str(), last_error.c_str());
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    char name[NI_MAXHOST], service[NI_MAXSERV];
    getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, name, sizeof name, service,
                sizeof service, NI_NUMERICHOST | NI_NUMERICSERV);
    *bound = addr.ss_family == AF_INET6 ? "[" + std::string(name) + "]:" + service
                                         : std::string(name) + ":" + service;
    set_nonblocking(fd);
    return fd;
}

// Opens a pseudo-terminal in raw mode. The harness keeps a slave descriptor open itself so the
// master does not report a hang-up (and spin) while no program has the terminal open.
int open_pty(std::string* path, int* slave_keepalive) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
        fail(kExitError, "cannot create a pseudo-terminal: %s", std::strerror(errno));
    const char* name = ptsname(master);
    if (!name) fail(kExitError, "ptsname: %s", std::strerror(errno));
    *path = name;
    int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) fail(kExitError, "cannot open %s: %s", name, std::strerror(errno));
    termios tio{};
    if (tcgetattr(slave, &tio) == 0) {
        cfmakeraw(&tio);
        tcsetattr(slave, TCSANOW, &tio);
    }
    *slave_keepalive = slave;
    set_nonblocking(master);
    return master;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

class CoSimulation {
 public:
    CoSimulation(const Options& opts, VerilatedContext* context)
        : opts_(opts), top_(new QACCEL_COSIM_TOP_CLASS{context})
#if QACCEL_COSIM_UART
          , line_out_(opts.clocks_per_bit, opts.gap_bits), line_in_(opts.clocks_per_bit)
#endif
    {
        started_ = std::chrono::steady_clock::now();
#if QACCEL_COSIM_TRACE
        if (!opts_.trace_path.empty()) {
            trace_.reset(new TraceFile);
            top_->trace(trace_.get(), 99);
            trace_->open(opts_.trace_path.c_str());
        }
#endif
    }

    ~CoSimulation() {
        top_->final();
#if QACCEL_COSIM_TRACE
        if (trace_) trace_->close();
#endif
    }

    int run() {
        setup_link();
        reset();
        int code = loop();
        flush_best_effort();
        report(exit_reason_, stderr);
        write_stats_file(exit_reason_);
        return code;
    }

 private:
    // ---- the design, one clock cycle at a time ---------------------------------------------

    void dump(uint64_t time) {
#if QACCEL_COSIM_TRACE
        if (trace_) trace_->dump(time);
#else
        (void)time;
#endif
    }

    // The generated wrapper holds the design's rst high for its first
    // QACCEL_COSIM_RESET_CYCLES edges (rst is not a model input: see cosim.py).
    void reset() {
        top_->QACCEL_PORT_CLK = 0;
#if QACCEL_COSIM_UART
        top_->QACCEL_PORT_UART_RX = 1;
#else
        top_->QACCEL_PORT_RX_VALID = 0;
        top_->QACCEL_PORT_TX_READY = 0;
#endif
        for (uint32_t i = 0; i < QACCEL_COSIM_RESET_CYCLES; ++i) {
            top_->QACCEL_PORT_CLK = 0;
            top_->eval();
            dump(2 * edges_);
            top_->QACCEL_PORT_CLK = 1;
            top_->eval();
            dump(2 * edges_ + 1);
            ++edges_;
        }
        grace_left_ = opts_.grace_cycles + 1;  // the design may start work by itself
    }

    // One rising edge with the link's bytes applied; returns whether anything is in flight.
    inline bool cycle() {
        bool pending;
#if QACCEL_COSIM_UART
        top_->QACCEL_PORT_UART_RX = line_out_.line();
        top_->QACCEL_PORT_CLK = 0;
        top_->eval();
        dump(2 * edges_);
        bool busy = top_->QACCEL_PORT_BUSY;
        top_->QACCEL_PORT_CLK = 1;
        top_->eval();
        dump(2 * edges_ + 1);
        ++edges_;
        ++cycles_;
        busy_cycles_ += busy;
        line_out_.tick();
        if (!line_out_.active() && !to_device_.empty()) {
            line_out_.start(to_device_.front());
            to_device_.pop();
            ++device_bytes_in_;
        }
        uint8_t byte;
        if (line_in_.sample(top_->QACCEL_PORT_UART_TX, &byte)) {
            to_host_.push(byte);
            ++device_bytes_out_;
        }
        pending = busy || top_->QACCEL_PORT_BUSY || line_out_.active() || line_in_.active()
                  || !top_->QACCEL_PORT_UART_TX;
#else
        bool offer = !to_device_.empty();
        top_->QACCEL_PORT_RX_VALID = offer;
        if (offer) top_->QACCEL_PORT_RX_PAYLOAD = to_device_.front();
        top_->QACCEL_PORT_TX_READY = to_host_.size() < kToHostLimit;
        top_->QACCEL_PORT_CLK = 0;
        top_->eval();
        dump(2 * edges_);
        bool rx_fire = offer && top_->QACCEL_PORT_RX_READY;
        bool tx_fire = top_->QACCEL_PORT_TX_VALID && top_->QACCEL_PORT_TX_READY;
        uint8_t byte = top_->QACCEL_PORT_TX_PAYLOAD;
        bool busy = top_->QACCEL_PORT_BUSY;
        top_->QACCEL_PORT_CLK = 1;
        top_->eval();
        dump(2 * edges_ + 1);
        ++edges_;
        ++cycles_;
        busy_cycles_ += busy;
        if (rx_fire) {
            to_device_.pop();
            ++device_bytes_in_;
        }
        if (tx_fire) {
            to_host_.push(byte);
            ++device_bytes_out_;
        }
        pending = busy || !to_device_.empty() || top_->QACCEL_PORT_TX_VALID
                  || top_->QACCEL_PORT_BUSY;
#endif
        if (pending)
            grace_left_ = opts_.grace_cycles + 1;
        else if (grace_left_)
            --grace_left_;
        return grace_left_ != 0;
    }

    // Clocking is needed while anything is in flight, unless the host stopped reading and the
    // bytes for it pile up (then the harness waits for the link instead of spinning).
    bool must_clock() const { return grace_left_ != 0 && to_host_.size() < kToHostLimit; }

    void run_batch() {
        auto start = std::chrono::steady_clock::now();
        uint64_t end = cycles_ + opts_.poll_cycles;
        if (opts_.max_cycles && end > opts_.max_cycles) end = opts_.max_cycles;
        while (cycles_ < end && cycle() && to_host_.size() < kToHostLimit) {
        }
        active_seconds_ += seconds_since(start);
    }

    // ---- the host link ---------------------------------------------------------------------

    void setup_link() {
        if (opts_.data_fd >= 0) {
            struct stat st;
            if (fstat(opts_.data_fd, &st) < 0)
                fail(kExitUsage, "--fd %d is not open: %s", opts_.data_fd, std::strerror(errno));
            data_fd_ = opts_.data_fd;
            set_nonblocking(data_fd_);
            std::printf("%s FD %d\n", kTag, data_fd_);
        } else if (!opts_.listen.empty()) {
            std::string bound;
            listen_fd_ = open_listener(opts_.listen, &bound);
            std::printf("%s LISTEN %s\n", kTag, bound.c_str());
        } else {
            std::string path;
            data_fd_ = open_pty(&path, &pty_slave_);
            if (!opts_.pty_link.empty()) {
                unlink(opts_.pty_link.c_str());
                if (symlink(path.c_str(), opts_.pty_link.c_str()) < 0)
                    fail(kExitError, "--pty-link %s: %s", opts_.pty_link.c_str(),
                         std::strerror(errno));
            }
            std::printf("%s PTY %s\n", kTag, path.c_str());
        }
        std::fflush(stdout);
        if (opts_.control_fd >= 0) set_nonblocking(opts_.control_fd);
    }

    // Waits for the link (timeout_ms -1: until something happens) and moves bytes.
    void service_link(int timeout_ms) {
        pollfd fds[3];
        int count = 0, data_index = -1, control_index = -1, listen_index = -1;
        if (data_fd_ >= 0) {
            short events = 0;
            if (!peer_eof_ && to_device_.size() < kToDeviceLimit) events |= POLLIN;
            if (!to_host_.empty()) events |= POLLOUT;
            data_index = count;
            fds[count++] = {data_fd_, events, 0};
        }
        if (listen_fd_ >= 0) {
            listen_index = count;
            fds[count++] = {listen_fd_, POLLIN, 0};
        }
        if (opts_.control_fd >= 0 && !control_closed_) {
            control_index = count;
            fds[count++] = {opts_.control_fd, POLLIN, 0};
        }
        timespec timeout{0, 0};
        sigset_t unblocked;
        sigemptyset(&unblocked);
        // Signals are blocked except inside ppoll: a stop request can never slip in between
        // the check and the wait.
        int ready = ppoll(fds, count, timeout_ms < 0 ? nullptr : &timeout, &unblocked);
        if (ready < 0) {
            if (errno == EINTR) return;
            fail(kExitError, "poll: %s", std::strerror(errno));
        }
        if (ready == 0) return;
        if (listen_index >= 0 && fds[listen_index].revents) accept_peer();
        if (control_index >= 0 && fds[control_index].revents) read_control();
        if (data_index >= 0 && fds[data_index].revents) {
            short revents = fds[data_index].revents;
            if (revents & POLLOUT) write_to_host();
            if (!peer_eof_ && (revents & (POLLIN | POLLHUP | POLLERR))) read_from_host();
            if (peer_eof_ && (revents & (POLLHUP | POLLERR)) && !(revents & POLLOUT))
                stop("peer-closed", kExitOk);  // nobody left to deliver to
        }
    }

    void accept_peer() {
        int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            fail(kExitError, "accept: %s", std::strerror(errno));
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        close(listen_fd_);  // one session per co-simulation
        listen_fd_ = -1;
        data_fd_ = fd;
    }

    void read_from_host() {
        while (to_device_.size() < kToDeviceLimit) {
            size_t room = kToDeviceLimit - to_device_.size();
            if (room > kReadChunk) room = kReadChunk;
            ssize_t got = read(data_fd_, to_device_.reserve(room), room);
            if (got > 0) {
                to_device_.commit(static_cast<size_t>(got));
                link_bytes_in_ += static_cast<uint64_t>(got);
                grace_left_ = opts_.grace_cycles + 1;
                continue;
            }
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
            if (got < 0 && errno == EINTR) continue;
            if (got == 0) {
                // The host closed (or shut down its sending side): finish the work in
                // flight, deliver what can be delivered, then exit.
                peer_eof_ = true;
                return;
            }
            stop("peer-closed", kExitOk);  // the peer vanished (ECONNRESET, EIO, ...)
            return;
        }
    }

    void write_to_host() {
        while (!to_host_.empty()) {
            // SIGPIPE is ignored: a vanished peer shows up as EPIPE here
            ssize_t sent = write(data_fd_, to_host_.data(), to_host_.size());
            if (sent > 0) {
                to_host_.consume(static_cast<size_t>(sent));
                link_bytes_out_ += static_cast<uint64_t>(sent);
                continue;
            }
            if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
            if (sent < 0 && errno == EINTR) continue;
            stop("peer-closed", kExitOk);
            return;
        }
    }

    void flush_best_effort() {
        if (data_fd_ >= 0 && !to_host_.empty()) write_to_host();
    }

    void read_control() {
        char chunk[256];
        for (;;) {
            ssize_t got = read(opts_.control_fd, chunk, sizeof chunk);
            if (got > 0) {
                control_line_.append(chunk, static_cast<size_t>(got));
                continue;
            }
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (got < 0 && errno == EINTR) continue;
            control_closed_ = true;  // the launcher went away: so do we
            stop("control-closed", kExitOk);
            break;
        }
        size_t newline;
        while ((newline = control_line_.find('\n')) != std::string::npos) {
            std::string command = control_line_.substr(0, newline);
            control_line_.erase(0, newline + 1);
            if (!command.empty() && command.back() == '\r') command.pop_back();
            if (command == "stats") {
                send_control_stats("stats");
            } else if (command == "idle") {
                ++idle_requests_;
            } else if (command == "quit") {
                stop("quit", kExitOk);
            } else {
                std::string reply = std::string(kTag) + " ERROR unknown control command '" +
                                    command + "'\n";
                write_control(reply);
            }
        }
    }

    void write_control(const std::string& text) {
        size_t done = 0;
        while (done < text.size()) {
            ssize_t sent = write(opts_.control_fd, text.data() + done, text.size() - done);
            if (sent > 0) {
                done += static_cast<size_t>(sent);
            } else if (sent < 0 && (errno == EAGAIN || errno == EINTR)) {
                pollfd fd{opts_.control_fd, POLLOUT, 0};
                poll(&fd, 1, 100);
            } else {
                control_closed_ = true;
                return;
            }
        }
    }

    void send_control_stats(const char* reason) {
        if (opts_.control_fd < 0 || control_closed_) return;
        write_control(stats_line(reason));
    }

    // ---- main loop -------------------------------------------------------------------------

    void stop(const char* reason, int code) {
        if (stopping_) return;
        stopping_ = true;
        exit_reason_ = reason;
        exit_code_ = code;
    }

    bool idle_now() const { return !must_clock() && to_host_.empty(); }

    int loop() {
        while (!stopping_) {
            if (g_stop_signal) {
                stop(g_stop_signal == SIGINT ? "sigint" : g_stop_signal == SIGHUP ? "sighup"
                                                                             : "sigterm",
                     kExitOk);
                break;
            }
            if (g_stats_signal) {
                g_stats_signal = 0;
                report("sigusr1", stderr);
                write_stats_file("sigusr1");
            }
            if (opts_.max_cycles && cycles_ >= opts_.max_cycles) {
                stop("max-cycles", kExitMaxCycles);
                break;
            }
            if (must_clock()) {
                run_batch();
                service_link(0);
                continue;
            }
            // Nothing to clock: take in whatever already arrived, and only then call the
            // simulation idle (an "idle" request sent after data must see that data).
            service_link(0);
            if (stopping_ || must_clock()) continue;
            if (idle_now()) {
                for (; idle_requests_; --idle_requests_) send_control_stats("idle");
                if (peer_eof_) {
                    stop("peer-closed", kExitOk);
                    break;
                }
            }
            service_link(-1);
        }
        return exit_code_;
    }

    // ---- statistics ------------------------------------------------------------------------

    std::string stats_line(const char* reason) const {
        double wall = seconds_since(started_);
        double rate = active_seconds_ > 0 ? cycles_ / active_seconds_ : 0.0;
        char text[640];
        std::snprintf(text, sizeof text,
                      "%s STATS reason=%s cycles=%" PRIu64 " busy_cycles=%" PRIu64
                      " bytes_in=%" PRIu64 " bytes_out=%" PRIu64 " device_bytes_in=%" PRIu64
                      " device_bytes_out=%" PRIu64 " framing_errors=%" PRIu64
                      " wall_s=%.6f active_s=%.6f cycles_per_s=%.0f\n",
                      kTag, reason, cycles_, busy_cycles_, link_bytes_in_, link_bytes_out_,
                      device_bytes_in_, device_bytes_out_, framing_errors(), wall,
                      active_seconds_, rate);
        return text;
    }

    uint64_t framing_errors() const {
#if QACCEL_COSIM_UART
        return line_in_.framing_errors();
#else
        return 0;
#endif
    }

    void report(const char* reason, FILE* stream) const {
        std::fputs(stats_line(reason).c_str(), stream);
        std::fflush(stream);
    }

    void write_stats_file(const char* reason) const {
        if (opts_.stats_path.empty()) return;
        double wall = seconds_since(started_);
        double rate = active_seconds_ > 0 ? cycles_ / active_seconds_ : 0.0;
        std::string temporary = opts_.stats_path + ".tmp";
        FILE* file = std::fopen(temporary.c_str(), "w");
        if (!file) {
            std::fprintf(stderr, "%s WARNING cannot write %s: %s\n", kTag, temporary.c_str(),
                         std::strerror(errno));
            return;
        }
        std::fprintf(file,
                     "{\"reason\": \"%s\", \"cycles\": %" PRIu64 ", \"busy_cycles\": %" PRIu64
                     ", \"bytes_in\": %" PRIu64 ", \"bytes_out\": %" PRIu64
                     ", \"device_bytes_in\": %" PRIu64 ", \"device_bytes_out\": %" PRIu64
                     ", \"framing_errors\": %" PRIu64
                     ", \"wall_s\": %.6f, \"active_s\": %.6f, \"cycles_per_s\": %.0f}\n",
                     reason, cycles_, busy_cycles_, link_bytes_in_, link_bytes_out_,
                     device_bytes_in_, device_bytes_out_, framing_errors(), wall,
                     active_seconds_, rate);
        std::fclose(file);
        std::rename(temporary.c_str(), opts_.stats_path.c_str());
    }

    static constexpr size_t kToDeviceLimit = 1 << 20;  // bytes read ahead from the host
    static constexpr size_t kToHostLimit = 1 << 20;    // bytes held for a host not reading
    static constexpr size_t kReadChunk = 1 << 16;

    const Options& opts_;
    std::unique_ptr<QACCEL_COSIM_TOP_CLASS> top_;
#if QACCEL_COSIM_TRACE
    std::unique_ptr<TraceFile> trace_;
#endif
#if QACCEL_COSIM_UART
    qaccel_cosim::UartLineDriver line_out_;
    qaccel_cosim::UartLineReceiver line_in_;
#endif
    ByteQueue to_device_;
    ByteQueue to_host_;
    int data_fd_ = -1;
    int listen_fd_ = -1;
    int pty_slave_ = -1;
    bool control_closed_ = false;
    bool peer_eof_ = false;
    std::string control_line_;
    unsigned idle_requests_ = 0;
    uint64_t grace_left_ = 0;
    uint64_t edges_ = 0;  // including reset, for waveform time
    uint64_t cycles_ = 0;  // rising edges since the end of reset
    uint64_t busy_cycles_ = 0;
    uint64_t link_bytes_in_ = 0;
    uint64_t link_bytes_out_ = 0;
    uint64_t device_bytes_in_ = 0;
    uint64_t device_bytes_out_ = 0;
    double active_seconds_ = 0;
    std::chrono::steady_clock::time_point started_;
    bool stopping_ = false;
    const char* exit_reason_ = "running";
    int exit_code_ = kExitOk;
};

void install_signals() {
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGHUP, &action, nullptr);
    action.sa_handler = on_stats_signal;
    sigaction(SIGUSR1, &action, nullptr);
    signal(SIGPIPE, SIG_IGN);
    // Delivered only inside ppoll() (see CoSimulation::service_link).
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGHUP);
    sigaddset(&blocked, SIGUSR1);
    sigprocmask(SIG_BLOCK, &blocked, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
    Options opts = parse_options(argc, argv);
    install_signals();
    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
#if QACCEL_COSIM_TRACE
    if (!opts.trace_path.empty()) context->traceEverOn(true);  // before the model exists
#endif
    int code;
    {
        CoSimulation simulation(opts, context.get());
        code = simulation.run();
    }
    return code;
}
