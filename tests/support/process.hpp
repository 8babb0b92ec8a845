// A child process for tests: argv in, stdout lines out, bounded waits, and
// cleanup by PID (SIGKILL + waitpid) whatever happens.
#pragma once

#include "crust/base/clock.hpp"
#include "crust/base/error.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace crust::test {

class child_process {
 public:
  // With `with_stdin`, the child reads from a pipe write_stdin() feeds.
  child_process(const boost::asio::any_io_executor& ex, const std::vector<std::string>& argv,
                bool with_stdin = false)
      : out_(ex) {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
    int in_fds[2] = {-1, -1};
    if (with_stdin && ::pipe(in_fds) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    if (with_stdin) {
      posix_spawn_file_actions_adddup2(&fa, in_fds[0], STDIN_FILENO);
      posix_spawn_file_actions_addclose(&fa, in_fds[0]);
      posix_spawn_file_actions_addclose(&fa, in_fds[1]);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int rc = ::posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    if (with_stdin) {
      ::close(in_fds[0]);
      stdin_ = in_fds[1];
    }
    if (rc != 0) {
      ::close(fds[0]);
      throw std::runtime_error("cannot start " + argv[0]);
    }
    out_.assign(fds[0]);
  }
  ~child_process() {
    close_stdin();
    terminate();
  }

  // SIGTERM, then SIGKILL if it has not ended within `grace`. A child run
  // under `timeout` passes the SIGTERM on to the daemon it runs; a SIGKILL
  // would kill only `timeout` and leave the daemon running.
  void terminate(std::chrono::milliseconds grace = std::chrono::milliseconds(2000)) {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (auto waited = std::chrono::milliseconds(0); waited < grace;
         waited += std::chrono::milliseconds(10)) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      ::usleep(10000);
    }
    kill(SIGKILL);
  }

  // Writes to the child's stdin (blocking; for short lines).
  void write_stdin(const std::string& text) {
    if (stdin_ >= 0) (void)!::write(stdin_, text.data(), text.size());
  }
  void close_stdin() {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const noexcept { return pid_; }

  // The next line of stdout, or nullopt at EOF / after `limit`.
  boost::asio::awaitable<std::optional<std::string>> read_line(duration limit = seconds(20)) {
    using namespace boost::asio;
    timer t(out_.get_executor());
    t.expires_after(limit);
    t.async_wait([this](error_code ec) {
      if (!ec) out_.cancel();
    });
    auto [ec, n] = co_await async_read_until(out_, buf_, '\n', as_tuple(use_awaitable));
    t.cancel();
    if (ec) co_return std::nullopt;
    std::string line(buffers_begin(buf_.data()),
                     buffers_begin(buf_.data()) + static_cast<std::ptrdiff_t>(n - 1));
    buf_.consume(n);
    co_return line;
  }

  // Exit status after the child ends, or nullopt if it is still running
  // after `limit` (it is then killed).
  boost::asio::awaitable<std::optional<int>> wait(duration limit = seconds(30)) {
    const auto deadline = clock::now() + limit;
    timer t(out_.get_executor());
    while (pid_ > 0) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        co_return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (clock::now() > deadline) break;
      t.expires_after(milliseconds(10));
      co_await t.async_wait(boost::asio::use_awaitable);
    }
    kill(SIGKILL);
    co_return std::nullopt;
  }

  void kill(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    if (sig == SIGKILL) {
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  boost::asio::posix::stream_descriptor out_;
  boost::asio::streambuf buf_;
};

}  // namespace crust::test
