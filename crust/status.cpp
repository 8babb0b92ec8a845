#include "crust/status.hpp"

#include "transports/endpoint.hpp"

#include <boost/json.hpp>

#include <map>
#include <sstream>
#include <tuple>

namespace crust {

namespace json = boost::json;

namespace {

std::string text(const boost::asio::ip::udp::endpoint& e) {
  return transport::to_string({e.address(), e.port()});
}

double ms(duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

json::object report_object(const nat::nat_report& r) {
  json::array ext, obs, notes;
  for (const auto& e : r.external) ext.push_back(json::string(text(e)));
  for (const auto& o : r.observations)
    obs.push_back(json::object{{"socket", o.socket},
                               {"local", text(o.local)},
                               {"observer", text(o.observer)},
                               {"mapped", text(o.mapped)}});
  for (const auto& n : r.notes) notes.push_back(json::string(n));
  json::object j{{"mapping", nat::to_string(r.mapping)},
                 {"allocation", nat::to_string(r.allocation)},
                 {"filtering", nat::to_string(r.filtering)},
                 {"punchable", r.punchable()},
                 {"external", std::move(ext)},
                 {"observations", std::move(obs)},
                 {"notes", std::move(notes)}};
  if (r.allocation == nat::allocation_behaviour::sequential) j["port_step"] = r.port_step;
  j["hairpinning"] = r.hairpinning ? json::value(*r.hairpinning) : json::value(nullptr);
  return j;
}

json::value endpoint_value(const std::optional<boost::asio::ip::tcp::endpoint>& e) {
  if (!e) return nullptr;
  return json::string(transport::to_string(*e));
}

// Prometheus label values escape backslash, quote and newline.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string nat_report_json(const nat::nat_report& r) {
  return json::serialize(report_object(r));
}

std::string status_json(const node_status& s) {
  json::array peers;
  for (const auto& p : s.peers) {
    json::object o{
        {"id", p.info.id.to_string()},
        {"transport", transport::to_string(p.info.transport)},
        {"path", to_string(p.info.path)},
        {"remote", p.info.remote},
        {"inbound", p.info.inbound},
        {"role", to_string(p.info.role)},
        {"pattern", p.info.address_only ? "XX" : "XK"},
        {"connection_id", p.info.connection_id},
        {"handshake_ms", ms(p.info.handshake_time)},
        {"connect_ms", ms(p.info.connect_time)},
        {"uptime_s", std::chrono::duration<double>(p.uptime).count()},
        {"messages_sent", p.stats.messages_sent},
        {"bytes_sent", p.stats.bytes_sent},
        {"messages_received", p.stats.messages_received},
        {"bytes_received", p.stats.bytes_received},
        {"messages_dropped", p.stats.messages_dropped},
    };
    o["rtt_ms"] = p.stats.rtt ? json::value(ms(*p.stats.rtt)) : json::value(nullptr);
    peers.push_back(std::move(o));
  }
  json::array mappings;
  for (const auto& m : s.port_mappings) {
    json::object o{{"method", nat::to_string(m.method)},
                   {"protocol", nat::pmp::to_string(m.protocol)},
                   {"internal_port", m.internal_port},
                   {"external_port", m.external_port},
                   {"lifetime_s", m.lifetime}};
    o["external_address"] = m.external_address.is_unspecified()
                                ? json::value(nullptr)
                                : json::value(m.external_address.to_string());
    mappings.push_back(std::move(o));
  }
  json::array retiring;
  for (const auto& e : s.retiring_tcp) retiring.push_back(endpoint_value(e));
  const auto& m = s.metrics;
  json::object metrics{
      {"handshakes_ok", m.handshakes_ok},
      {"handshakes_failed", m.handshakes_failed},
      {"handshakes_shed", m.handshakes_shed},
      {"connections_opened", m.connections_opened},
      {"connections_refused", m.connections_refused},
      {"events_dropped", m.events_dropped},
      {"connections_lost", m.connections_lost},
      {"messages_sent", m.messages_sent},
      {"bytes_sent", m.bytes_sent},
      {"messages_received", m.messages_received},
      {"bytes_received", m.bytes_received},
      {"messages_dropped", m.messages_dropped},
      {"punch_attempts", m.punch_attempts},
      {"punch_successes", m.punch_successes},
      {"relayed_connections", m.relayed_connections},
      {"relay_circuits", m.relay_circuits},
      {"relay_bytes", m.relay_bytes},
      {"relay_introductions", m.relay_introductions},
  };
  json::object out{
      {"id", s.id.to_string()},
      {"key", s.key.to_string()},
      {"network", s.network},
      {"version", s.version},
      {"protocol_version", s.protocol_version},
      {"uptime_s", std::chrono::duration<double>(s.uptime).count()},
      {"listeners", json::object{{"tcp", endpoint_value(s.tcp)},
                                 {"udp", endpoint_value(s.udp)},
                                 {"retiring_tcp", std::move(retiring)},
                                 {"port_rotations", s.port_rotations}}},
      {"port_mappings", std::move(mappings)},
      {"peers", std::move(peers)},
      {"metrics", std::move(metrics)},
      {"event_queue", json::object{{"messages", s.queued_messages},
                                   {"message_bytes", s.queued_message_bytes},
                                   {"other", s.queued_other_events}}},
  };
  out["nat"] = s.nat ? json::value(report_object(*s.nat)) : json::value(nullptr);
  return json::serialize(out);
}

std::string metrics_text(const node_status& s) {
  std::ostringstream o;
  auto counter = [&](const char* name, const char* help, std::uint64_t v) {
    o << "# HELP crust_" << name << "_total " << help << "\n"
      << "# TYPE crust_" << name << "_total counter\n"
      << "crust_" << name << "_total " << v << "\n";
  };
  const auto& m = s.metrics;
  counter("handshakes_ok", "Noise handshakes completed, inbound and outbound.", m.handshakes_ok);
  counter("handshakes_failed", "Noise handshakes that failed.", m.handshakes_failed);
  counter("handshakes_shed",
          "Inbound connections closed before their handshake (failure rate or eviction).",
          m.handshakes_shed);
  counter("connections_opened", "Connections admitted and registered.", m.connections_opened);
  counter("connections_refused", "Inbound connections closed unheard at max_connections.",
          m.connections_refused);
  counter("events_dropped", "Events other than messages dropped, unread by the application.",
          m.events_dropped);
  counter("connections_lost", "Connections lost (LostPeer).", m.connections_lost);
  counter("messages_sent", "Messages queued onto connections.", m.messages_sent);
  counter("sent_bytes", "Message payload bytes sent.", m.bytes_sent);
  counter("messages_received", "Messages received whole.", m.messages_received);
  counter("received_bytes", "Message payload bytes received.", m.bytes_received);
  counter("messages_dropped", "Messages dropped by back-pressure.", m.messages_dropped);
  counter("punch_attempts", "UDP hole punches started.", m.punch_attempts);
  counter("punch_successes", "UDP hole punches that found a path.", m.punch_successes);
  counter("relayed_connections", "Connections of ours carried by a relay circuit.",
          m.relayed_connections);
  counter("relay_circuits", "Circuits relayed for other peers.", m.relay_circuits);
  counter("relay_bytes", "Bytes relayed for other peers.", m.relay_bytes);
  counter("relay_introductions", "Introductions passed on for other peers.", m.relay_introductions);
  counter("port_rotations", "TCP listener port rotations.", s.port_rotations);
  // Every transport and path appears, 0 when none is open, so a graph
  // does not lose a series when its last connection closes.
  std::map<std::pair<std::string, std::string>, int> open;
  for (auto t : {transport::kind::tcp, transport::kind::utp, transport::kind::relay})
    for (auto p : {path_kind::direct, path_kind::punched, path_kind::mapped, path_kind::relayed})
      open[{transport::to_string(t), to_string(p)}] = 0;
  for (const auto& p : s.peers)
    ++open[{transport::to_string(p.info.transport), to_string(p.info.path)}];
  o << "# HELP crust_connections Connections open now, by transport and path.\n"
    << "# TYPE crust_connections gauge\n";
  for (const auto& [k, n] : open)
    o << "crust_connections{transport=\"" << label(k.first) << "\",path=\"" << label(k.second)
      << "\"} " << n << "\n";
  o << "# HELP crust_event_queue_bytes Message payload bytes waiting for the application.\n"
    << "# TYPE crust_event_queue_bytes gauge\n"
    << "crust_event_queue_bytes " << s.queued_message_bytes << "\n";
  o << "# HELP crust_uptime_seconds Seconds since the service was made.\n"
    << "# TYPE crust_uptime_seconds gauge\n"
    << "crust_uptime_seconds " << std::chrono::duration<double>(s.uptime).count() << "\n";
  o << "# HELP crust_info The node's identity and versions.\n"
    << "# TYPE crust_info gauge\n"
    << "crust_info{id=\"" << label(s.id.to_string()) << "\",network=\"" << label(s.network)
    << "\",version=\"" << label(s.version) << "\",protocol=\"" << s.protocol_version << "\"} 1\n";
  return o.str();
}

std::string_view status_page_html() noexcept {
  // Plain HTML and a little script: no external resources, so the page
  // works on a machine with no network but the node's.
  return R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Crust node</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: .25em .8em; text-align: left; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: .95em; }
#error { color: #b00; }
</style>
</head>
<body>
<h1>Crust node <code id="id">…</code></h1>
<div id="summary">loading /status …</div>
<div id="error"></div>
<h2>Peers</h2>
<table id="peers">
<thead><tr><th>peer</th><th>transport</th><th>path</th><th>remote</th><th>RTT</th>
<th>sent</th><th>received</th><th>up</th></tr></thead>
<tbody></tbody>
</table>
<h2>Counters</h2>
<table id="metrics"><tbody></tbody></table>
<p><a href="/status">/status</a> (JSON) · <a href="/metrics">/metrics</a> (Prometheus)</p>
<script>
function cell(row, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}
function bytes(n) {
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1048576).toFixed(1) + ' MiB';
}
async function refresh() {
  try {
    const r = await fetch('/status', {cache: 'no-store'});
    if (!r.ok) throw new Error('/status answered ' + r.status);
    const s = await r.json();
    document.getElementById('id').textContent = s.id.slice(0, 16);
    document.getElementById('summary').textContent =
      'network "' + s.network + '", version ' + s.version + ' (protocol ' + s.protocol_version +
      '), tcp ' + (s.listeners.tcp || '-') + ', udp ' + (s.listeners.udp || '-') +
      (s.nat ? ', NAT: ' + s.nat.mapping + ' mapping' : '') + ', ' + s.peers.length +
      ' peer(s), up ' + Math.round(s.uptime_s) + ' s';
    const body = document.querySelector('#peers tbody');
    body.replaceChildren();
    for (const p of s.peers) {
      const row = document.createElement('tr');
      row.className = 'peer';
      row.dataset.id = p.id;
      cell(row, p.id.slice(0, 16));
      cell(row, p.transport);
      cell(row, p.path);
      cell(row, p.remote);
      cell(row, p.rtt_ms === null ? '-' : p.rtt_ms.toFixed(1) + ' ms', 'num');
      cell(row, bytes(p.bytes_sent), 'num');
      cell(row, bytes(p.bytes_received), 'num');
      cell(row, Math.round(p.uptime_s) + ' s', 'num');
      body.appendChild(row);
    }
    const mb = document.querySelector('#metrics tbody');
    mb.replaceChildren();
    for (const [k, v] of Object.entries(s.metrics)) {
      const row = document.createElement('tr');
      cell(row, k);
      cell(row, String(v), 'num');
      mb.appendChild(row);
    }
    document.getElementById('error').textContent = '';
  } catch (e) {
    document.getElementById('error').textContent = String(e);
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
)html";
}

}  // namespace crust
