#include "crust/base/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>

namespace crust {

namespace {
error_code last_error() {
  return {errno, boost::system::system_category()};
}

// Closes the descriptor on every path out.
struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

result<void> write_file_atomically(const std::filesystem::path& path, std::string_view contents,
                                   unsigned mode) {
  auto tmp = path;
  tmp += ".tmp";
  fd_guard f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)};
  if (f.fd < 0) return last_error();
  // In case a temporary file was left with other permissions.
  if (::fchmod(f.fd, static_cast<mode_t>(mode)) != 0) return last_error();
  const char* p = contents.data();
  std::size_t left = contents.size();
  while (left > 0) {
    auto n = ::write(f.fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(f.fd) != 0) return last_error();
  const int fd = f.fd;
  f.fd = -1;
  if (::close(fd) != 0) return last_error();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return last_error();
  // Make the rename itself durable.
  auto dir = path.parent_path();
  if (dir.empty()) dir = ".";
  fd_guard d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (d.fd >= 0) ::fsync(d.fd);
  return {};
}

result<std::string> read_file(const std::filesystem::path& path) {
  fd_guard f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return last_error();
  std::string out;
  char buf[16384];
  for (;;) {
    auto n = ::read(f.fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace crust
