// A node's datagram side for tests: one UDP socket on loopback and one µTP
// manager on it, both running on the test's io_context.
#pragma once

#include "transports/udp.hpp"
#include "transports/utp/manager.hpp"

#include "support/test.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

namespace crust::test {

// A node's datagram side: one socket, one µTP manager, both running.
struct utp_node {
  std::shared_ptr<transport::udp_mux> mux;
  std::shared_ptr<utp::manager> mgr;

  static utp_node make(boost::asio::io_context& io, bool listen, utp::manager::options o = {}) {
    auto m = transport::udp_mux::open(io.get_executor(),
                                      {boost::asio::ip::make_address("127.0.0.1"), 0});
    REQUIRE(m);
    utp_node n{*m, nullptr};
    n.mgr = utp::attach(n.mux, o);
    n.mgr->listen(listen);
    boost::asio::co_spawn(io, n.mux->run(), boost::asio::detached);
    boost::asio::co_spawn(io, n.mgr->run(), boost::asio::detached);
    return n;
  }
  transport::udp_endpoint at() const { return mux->local_endpoint(); }
  void stop() {
    mgr->shutdown();
    mux->close();
  }
};

}  // namespace crust::test
