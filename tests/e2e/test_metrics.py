#!/usr/bin/python3
"""The Prometheus endpoints, scraped over HTTP as Prometheus would: the policy daemon's
decisions by stage, rule and verdict with their latency, its Redis requests, failures
and reachability (Redis killed mid-test), its DNS lookups against a private dnsmasq, and
the relay client's queue size and age and deliveries by result; the example Grafana
dashboard uses only metrics that exist."""

import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import Dnsmasq, PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.nodes import store_config  # noqa: E402
from rgtest.redis import RedisServer  # noqa: E402
from rgtest.relayd import Relayd  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402

LOCAL = "user1@example.test"
SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? ([-+0-9.eEinfNa]+)$')


def scrape(port):
    """{(name, labels): value} from the text format."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out, text


def value(samples, name, **labels):
    want = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    return samples.get((name, want))


with RedisServer() as redis, Dnsmasq(port=free_port(), hosts={"sender.test": "127.0.0.1"}) as dns:
    mport = free_port()
    rules = ('[relay]\nlocal_domains = ["example.test"]\n[limits]\nexempt_group = ""\n[limits.message_rate]\nmax = 50\n'
             '[limits.connections]\nmax = 20\n[limits.unknown_recipients]\nmax = 5\n'
             f'[dns]\nservers = ["{dns.server}"]\nrequire_sender_domain = true\n'
             + store_config("single", [redis.address], fail_mode="tempfail"))
    with Relayguard(rules, listen_extra=f'metrics = "127.0.0.1:{mport}"') as rg, \
            PostfixInstance(port=free_port(), milter=rg.milter) as pf:
        for _ in range(3):
            send_message("127.0.0.1", pf.port, source="127.0.0.61", sender="s@sender.test", rcpts=[LOCAL])
        send_message("127.0.0.1", pf.port, source="127.0.0.62", sender="s@sender.test", rcpts=["x@foreign.example"])
        time.sleep(0.5)
        m, text = scrape(mport)
        check("decisions by stage, rule and verdict: the relay refusal at RCPT",
              value(m, "relayguard_decisions_total", stage="rcpt", rule="relay", verdict="reject") == 1, text[:3000])
        check("decision latency per stage: 3 end-of-message decisions timed",
              value(m, "relayguard_decision_seconds_count", stage="eom") == 3
              and value(m, "relayguard_decision_seconds_bucket", stage="eom", le="+Inf") == 3, text[:3000])
        check("Redis requests counted, none failed, the store reachable",
              (value(m, "relayguard_redis_requests_total") or 0) >= 3
              and value(m, "relayguard_redis_failures_total") == 0 and value(m, "relayguard_store_reachable") == 1,
              text[-2000:])
        check("Redis call latency is a histogram", (value(m, "relayguard_redis_call_seconds_count") or 0) >= 3)
        check("DNS: the sender domain looked up once, then answered from the cache",
              value(m, "relayguard_dns_queries_total") >= 1 and (value(m, "relayguard_dns_cache_hits_total") or 0) >= 2,
              text[-1500:])
        # With every counting limit on, a transaction waits for Redis twice:
        # at connect and at MAIL. RCPT and end of data wait for nothing.
        before = value(m, "relayguard_redis_stage_waits_total")
        sent = [send_message("127.0.0.1", pf.port, source="127.0.0.64", sender="s@sender.test",
                             rcpts=[LOCAL, "user2@example.test"]).delivered for _ in range(5)]
        m, text = scrape(mport)
        waits = value(m, "relayguard_redis_stage_waits_total")
        check("Redis: 5 transactions of 2 recipients each waited for Redis exactly 10 times (connect and MAIL)",
              all(sent) and before is not None and waits - before == 10, f"{sent} {before} -> {waits}")
        redis.kill()
        send_message("127.0.0.1", pf.port, source="127.0.0.63", sender="s@sender.test", rcpts=[LOCAL])
        m, text = scrape(mport)
        m_policy = dict(m)
        check("with Redis killed: failures counted and the store shown unreachable",
              (value(m, "relayguard_redis_failures_total") or 0) >= 1 and value(m, "relayguard_store_reachable") == 0,
              text[-2000:])
        check("tempfail decisions for the store are counted",
              any(k[0] == "relayguard_decisions_total" and 'rule="store"' in k[1] and 'verdict="tempfail"' in k[1]
                  for k in m), [k for k in m if k[0] == "relayguard_decisions_total"])

with SmtpSink(soft_reject=["RCPT"]) as sink:
    rport = free_port()
    with Relayd(f'route = "smarthost"\nsmarthosts = ["{sink.address}"]\nretry_interval = "1s"\n'
                f'max_retry_interval = "1s"\nmetrics = "127.0.0.1:{rport}"\n') as relayd:
        send_message("127.0.0.1", relayd.port, sender="s@example.test", rcpts=["a@remote.example"])
        relayd.wait_for(r"status=deferred")
        time.sleep(1.2)
        m, text = scrape(rport)
        check("the relay client: one message queued, its age, and deferred attempts",
              value(m, "relayguard_queue_messages") == 1 and (value(m, "relayguard_queue_oldest_seconds") or 0) >= 1
              and (value(m, "relayguard_deliveries_total", result="deferred") or 0) >= 1, text)
        sink.restart(soft_reject=())
        sink.wait_count(1, 20)
        relayd.wait_for(r"status=sent")
        time.sleep(0.3)
        m, text = scrape(rport)
        check("after delivery: sent 1, the queue empty",
              value(m, "relayguard_deliveries_total", result="sent") == 1 and value(m, "relayguard_queue_messages") == 0,
              text)
# The example dashboard asks only for metrics the daemons export.
import json  # noqa: E402
dashboard = json.load(open(os.path.join(os.environ["RELAYGUARD_SOURCE_DIR"], "contrib/grafana/relayguard.json")))
asked = set()
for p in dashboard["panels"]:
    for t in p["targets"]:
        asked |= set(re.findall(r"relayguard_[a-z_]+", t["expr"]))
exported = {re.sub(r"_(bucket|count|sum)$", "", name) for name, _ in list(m_policy) + list(m)}
missing = {a for a in asked if re.sub(r"_(bucket|count|sum)$", "", a) not in exported}
check("every metric the Grafana dashboard uses is exported", asked and not missing, missing)
finish()
