#include "transports/pipe.hpp"

#include <algorithm>
#include <cstring>

namespace crust::transport {

pipe_state::pipe_state(asio::any_io_executor ex, std::string description, std::uint32_t window,
                       std::size_t max_chunk, carrier c)
    : ex_(std::move(ex)),
      description_(std::move(description)),
      window_(window),
      max_chunk_(std::max<std::size_t>(max_chunk, 1)),
      carrier_(std::move(c)),
      granted_unused_(window),
      credit_(window) {}

bool pipe_state::deliver(byte_span data) {
  if (ended_ || data.empty()) return !ended_;
  if (data.size() > granted_unused_) {
    end(make_error_code(errc::protocol_violation));
    return false;
  }
  granted_unused_ -= data.size();
  inbox_.emplace_back(data.begin(), data.end());
  inbox_bytes_ += data.size();
  progress();
  return true;
}

void pipe_state::add_credit(std::uint32_t more) {
  credit_ = std::min<std::uint64_t>(credit_ + more, std::uint64_t{1} << 32);
  progress();
}

void pipe_state::end(error_code why) {
  if (ended_) return;
  ended_ = why ? why : make_error_code(asio::error::eof);
  progress();
}

void pipe_state::start_read(io_handler h, std::vector<asio::mutable_buffer> bufs) {
  if (take_op(read_, {std::move(h), std::move(bufs), {}}, released_, ex_, [w = weak_from_this()] {
        if (auto st = w.lock()) st->cancel(true);
      }))
    progress();
}

void pipe_state::start_write(io_handler h, std::vector<asio::const_buffer> bufs) {
  if (take_op(write_, {std::move(h), {}, std::move(bufs)}, released_, ex_, [w = weak_from_this()] {
        if (auto st = w.lock()) st->cancel(false);
      }))
    progress();
}

void pipe_state::progress() {
  if (read_) {
    std::size_t n = 0;
    for (const auto& b : read_->rbufs) {
      auto* out = static_cast<byte*>(b.data());
      std::size_t room = b.size();
      while (room > 0 && !inbox_.empty()) {
        auto& front = inbox_.front();
        const std::size_t take = std::min(room, front.size() - inbox_front_used_);
        std::memcpy(out, front.data() + inbox_front_used_, take);
        out += take;
        room -= take;
        n += take;
        inbox_front_used_ += take;
        if (inbox_front_used_ == front.size()) {
          inbox_.pop_front();
          inbox_front_used_ = 0;
        }
      }
      if (inbox_.empty()) break;
    }
    inbox_bytes_ -= n;
    const bool empty_read = std::all_of(read_->rbufs.begin(), read_->rbufs.end(),
                                        [](const auto& b) { return b.size() == 0; });
    if (n > 0 || empty_read) {
      consumed_ += static_cast<std::uint32_t>(n);
      complete_op(read_, ex_, {}, n);
    } else if (ended_) {
      complete_op(read_, ex_, ended_, 0);
    }
  }
  // Grant more once half a window has been read: fewer window records than
  // one per read, and the sender never stalls for a whole round trip.
  if (consumed_ >= window_ / 2 && !ended_ && carrier_.grant) {
    granted_unused_ += consumed_;
    const auto more = consumed_;
    consumed_ = 0;
    carrier_.grant(more);
  }
  if (write_) {
    if (ended_) {
      complete_op(write_, ex_,
                  ended_ == asio::error::eof ? make_error_code(asio::error::broken_pipe) : ended_,
                  0);
    } else if (credit_ > 0) {
      bytes chunk;
      const std::size_t limit = std::min<std::uint64_t>(credit_, max_chunk_);
      for (const auto& b : write_->wbufs) {
        const std::size_t take = std::min(b.size(), limit - chunk.size());
        const auto* p = static_cast<const byte*>(b.data());
        chunk.insert(chunk.end(), p, p + take);
        if (chunk.size() == limit) break;
      }
      const bool empty_write = std::all_of(write_->wbufs.begin(), write_->wbufs.end(),
                                           [](const auto& b) { return b.size() == 0; });
      if (!chunk.empty() || empty_write) {
        const auto n = chunk.size();
        credit_ -= n;
        if (n > 0 && carrier_.send) carrier_.send(std::move(chunk));
        complete_op(write_, ex_, {}, n);
      }
    }
  }
}

void pipe_state::cancel(bool read) {
  auto& op = read ? read_ : write_;
  if (op) complete_op(op, ex_, make_error_code(asio::error::operation_aborted), 0);
}

void pipe_state::release() {
  if (released_) return;
  released_ = true;
  cancel(true);
  cancel(false);
  if (!ended_) ended_ = make_error_code(asio::error::operation_aborted);
  // Told after the fact, from the executor: the carrier may be in a call
  // that destroyed this handle.
  if (carrier_.closed) asio::post(ex_, std::move(carrier_.closed));
  carrier_ = {};
}

}  // namespace crust::transport
