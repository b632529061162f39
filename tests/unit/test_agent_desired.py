"""Desired state vs kube-proxy's IPVS proxier: the portable cases of pkg/proxy/ipvs/proxier_test.go."""

from __future__ import annotations

from typing import Any

from labkit.agent.desired import compute_desired
from labkit.agent.model import FLAG_PERSISTENT, FLAG_SCHED2

NODE = "node1"


def svc(name: str = "svc", ns: str = "ns1", cluster_ip: str = "10.20.30.41", ports: list[dict] | None = None,
        **spec: Any) -> dict:
    s = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
         "spec": {"clusterIP": cluster_ip, "type": "ClusterIP",
                  "ports": ports or [{"name": "p80", "port": 80, "protocol": "TCP"}], **spec},
         "status": {}}
    if "status" in spec:
        s["status"] = s["spec"].pop("status")
    return s


def ep(ip: str, node: str | None = NODE, ready: bool | None = True, serving: bool | None = None,
       terminating: bool | None = None) -> dict:
    cond: dict[str, bool] = {}
    if ready is not None:
        cond["ready"] = ready
    if serving is not None:
        cond["serving"] = serving
    if terminating is not None:
        cond["terminating"] = terminating
    e: dict[str, Any] = {"addresses": [ip], "conditions": cond}
    if node:
        e["nodeName"] = node
    return e


def slice_(endpoints: list[dict], name: str = "svc", ns: str = "ns1", port: int = 80, port_name: str = "p80",
           protocol: str = "TCP", address_type: str = "IPv4", slice_name: str | None = None) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": address_type,
            "metadata": {"name": slice_name or f"{name}-abc", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name}},
            "ports": [{"name": port_name, "port": port, "protocol": protocol}], "endpoints": endpoints}


def rs(state, proto: str, ip: str, port: int) -> set[str]:
    vs = state.table[(proto, ip, port)]
    return {f"{d.address}:{d.port}" for d in vs.destinations}


def test_nodeport_two_vs_one_rs_ipv6_slice_ignored():  # case 1
    s = svc(type="NodePort", ports=[{"name": "p80", "port": 80, "nodePort": 3001, "protocol": "TCP"}])
    st = compute_desired([s], [slice_([ep("10.180.0.1")]), slice_([ep("1002:ab8::2:1")], address_type="IPv6",
                                                                  slice_name="svc-v6")],
                         NODE, ["100.101.102.103", "2001:db8::1:1"])
    assert set(st.table) == {("TCP", "10.20.30.41", 80), ("TCP", "100.101.102.103", 3001)}
    for vs in st.table.values():
        assert vs.scheduler == "rr"
        assert [(d.address, d.port, d.weight, d.forward) for d in vs.destinations] == [("10.180.0.1", 80, 1, "Masq")]
    assert st.bind_addresses == {"10.20.30.41"}  # NodePort VSs are never bound


def test_nodeport_udp_and_no_endpoints_and_sctp():  # cases 2, 3, 4
    s = svc(type="NodePort", ports=[{"name": "p80", "port": 80, "nodePort": 3001, "protocol": "UDP"}])
    st = compute_desired([s], [slice_([ep("10.180.0.1")], protocol="UDP")], NODE, ["100.101.102.103"])
    assert rs(st, "UDP", "100.101.102.103", 3001) == {"10.180.0.1:80"}
    st = compute_desired([s], [], NODE, ["100.101.102.103"])
    assert set(st.table) == {("UDP", "10.20.30.41", 80), ("UDP", "100.101.102.103", 3001)}
    assert all(not vs.destinations for vs in st.table.values())
    s = svc(type="NodePort", ports=[{"name": "p80", "port": 80, "nodePort": 3001, "protocol": "SCTP"}])
    st = compute_desired([s], [], NODE, ["100.101.102.103", "100.101.102.104", "100.101.102.105", "127.0.0.1"])
    assert sorted(k for k in st.table if k[2] == 3001) == [("SCTP", f"100.101.102.10{i}", 3001) for i in (3, 4, 5)]


def test_nodeport_etp_local():  # case 5
    s = svc(type="NodePort", externalTrafficPolicy="Local",
            ports=[{"name": "p80", "port": 80, "nodePort": 3001, "protocol": "TCP"}])
    st = compute_desired([s], [slice_([ep("10.180.0.1"), ep("10.180.1.1", node="otherHost")])], NODE,
                         ["100.101.102.103"])
    assert rs(st, "TCP", "10.20.30.41", 80) == {"10.180.0.1:80", "10.180.1.1:80"}
    assert rs(st, "TCP", "100.101.102.103", 3001) == {"10.180.0.1:80"}
    assert st.masquerade == set()  # KUBE-NODE-PORT-LOCAL-TCP: RETURN before KUBE-MARK-MASQ


def test_nodeport_external_and_lb_traffic_is_masqueraded_clusterip_is_not():
    s = svc(type="LoadBalancer", externalIPs=["50.60.70.81"],
            ports=[{"name": "p80", "port": 80, "nodePort": 3001, "protocol": "TCP"}],
            status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}})
    st = compute_desired([s], [slice_([ep("10.180.0.1")])], NODE, ["100.101.102.103"])
    assert st.masquerade == {("TCP", "100.101.102.103", 3001), ("TCP", "50.60.70.81", 80), ("TCP", "1.2.3.4", 80)}
    assert ("TCP", "10.20.30.41", 80) in st.table


def test_loadbalancer_etp_local_and_ipmode_proxy():  # cases 6, 17
    s = svc(type="LoadBalancer", externalTrafficPolicy="Local",
            ports=[{"name": "p80", "port": 80, "nodePort": 3001, "protocol": "TCP"}],
            status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}})
    st = compute_desired([s], [slice_([ep("10.180.0.1"), ep("10.180.2.1", node="other")])], NODE, [])
    assert rs(st, "TCP", "1.2.3.4", 80) == {"10.180.0.1:80"}
    assert "1.2.3.4" in st.bind_addresses
    s2 = svc(type="LoadBalancer", ports=[{"name": "p80", "port": 80, "protocol": "TCP"}],
             status={"loadBalancer": {"ingress": [{"ip": "9.9.9.9", "ipMode": "Proxy"}]}})
    st = compute_desired([s2], [], NODE, [])
    assert list(st.table) == [("TCP", "10.20.30.41", 80)]


def test_session_affinity_every_vs():  # case 7
    s = svc(type="NodePort", externalIPs=["50.60.70.81"], sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 10800}},
            ports=[{"name": "p80", "port": 80, "nodePort": 3001, "protocol": "TCP"}])
    st = compute_desired([s], [], NODE, ["100.101.102.103"])
    assert len(st.table) == 3
    for vs in st.table.values():
        assert vs.flags & FLAG_PERSISTENT and vs.timeout == 10800
    s["spec"].pop("sessionAffinityConfig")
    assert all(vs.timeout == 10800 for vs in compute_desired([s], [], NODE, []).table.values())  # API default


def test_internal_traffic_policy():  # case 8
    eps = [ep("10.0.1.1"), ep("10.0.1.2", node="host1"), ep("10.0.1.3", node="host2")]
    st = compute_desired([svc(internalTrafficPolicy="Local")], [slice_(eps)], NODE, [])
    assert rs(st, "TCP", "10.20.30.41", 80) == {"10.0.1.1:80"}
    st = compute_desired([svc(internalTrafficPolicy="Local")], [slice_(eps[1:])], NODE, [])
    assert rs(st, "TCP", "10.20.30.41", 80) == set()
    st = compute_desired([svc(internalTrafficPolicy="Cluster")], [slice_(eps)], NODE, [])
    assert len(rs(st, "TCP", "10.20.30.41", 80)) == 3


def _terminating_eps(local_ready: bool) -> list[dict]:
    # .1/.2 local, .3 local serving+terminating, .4 local not serving, .5 remote ready
    if local_ready:
        return [ep("10.0.1.1"), ep("10.0.1.2"), ep("10.0.1.3", ready=False, serving=True, terminating=True),
                ep("10.0.1.4", ready=False, serving=False, terminating=True), ep("10.0.1.5", node="another")]
    return [ep("10.0.1.1", ready=False, serving=True, terminating=True),
            ep("10.0.1.2", ready=False, serving=True, terminating=True),
            ep("10.0.1.3", ready=False, serving=False, terminating=True),
            ep("10.0.1.4", ready=False, serving=True, terminating=True, node="another"),
            ep("10.0.1.5", ready=False, serving=False, terminating=True, node="another")]


def test_ready_and_terminating_cluster():  # case 9
    st = compute_desired([svc(externalIPs=["1.2.3.4"])], [slice_(_terminating_eps(True))], NODE, [])
    want = {"10.0.1.1:80", "10.0.1.2:80", "10.0.1.5:80"}
    assert rs(st, "TCP", "10.20.30.41", 80) == want and rs(st, "TCP", "1.2.3.4", 80) == want


def test_ready_and_terminating_local():  # case 10
    st = compute_desired([svc(externalIPs=["1.2.3.4"], externalTrafficPolicy="Local")],
                         [slice_(_terminating_eps(True))], NODE, [])
    assert rs(st, "TCP", "10.20.30.41", 80) == {"10.0.1.1:80", "10.0.1.2:80", "10.0.1.5:80"}
    assert rs(st, "TCP", "1.2.3.4", 80) == {"10.0.1.1:80", "10.0.1.2:80"}


def test_only_terminating_cluster_falls_back_to_serving_terminating():  # case 11
    st = compute_desired([svc(externalIPs=["1.2.3.4"])], [slice_(_terminating_eps(False))], NODE, [])
    want = {"10.0.1.1:80", "10.0.1.2:80", "10.0.1.4:80"}
    assert rs(st, "TCP", "10.20.30.41", 80) == want and rs(st, "TCP", "1.2.3.4", 80) == want


def test_only_terminating_local():  # case 12
    eps = _terminating_eps(False)
    eps[4] = ep("10.0.1.5", node="another")  # .5 remote and ready
    st = compute_desired([svc(externalIPs=["1.2.3.4"], externalTrafficPolicy="Local")], [slice_(eps)], NODE, [])
    assert rs(st, "TCP", "10.20.30.41", 80) == {"10.0.1.5:80"}
    assert rs(st, "TCP", "1.2.3.4", 80) == {"10.0.1.1:80", "10.0.1.2:80"}


def test_endpointslice_ready_and_deleted():  # case 13
    eps = [ep("10.0.1.1"), ep("10.0.1.2", node="n2"), ep("10.0.1.3", node="n3"), ep("10.0.1.4", ready=False)]
    st = compute_desired([svc()], [slice_(eps)], NODE, [])
    assert rs(st, "TCP", "10.20.30.41", 80) == {"10.0.1.1:80", "10.0.1.2:80", "10.0.1.3:80"}
    st = compute_desired([svc()], [], NODE, [])
    assert rs(st, "TCP", "10.20.30.41", 80) == set()


def test_multiport_bind_addresses():  # case 14
    ports = [{"name": f"p{i}", "port": 80 + i, "protocol": "TCP"} for i in range(3)]
    for n in (2, 1, 3):
        st = compute_desired([svc(cluster_ip="172.16.55.4", ports=ports[:n])], [], NODE, [])
        assert st.bind_addresses == {"172.16.55.4"} and len(st.table) == n
    assert compute_desired([], [], NODE, []).bind_addresses == set()


def test_headless_and_externalname_get_nothing():  # case 16
    headless = svc(cluster_ip="None")
    ext = svc(name="ext", cluster_ip="", type="ExternalName", externalName="example.net")
    st = compute_desired([headless, ext], [slice_([ep("10.0.1.1")])], NODE, [])
    assert st.table == {} and st.bind_addresses == set()


def test_external_ip_on_node_not_bound_and_mh_flag():
    st = compute_desired([svc(externalIPs=["100.101.102.103", "5.6.7.8"])], [], NODE, ["100.101.102.103"], "mh")
    assert st.bind_addresses == {"10.20.30.41", "5.6.7.8"}
    assert all(vs.flags & FLAG_SCHED2 and vs.scheduler == "mh" for vs in st.table.values())


def test_port_matched_by_name_and_protocol_and_nil_ready():
    s = svc(ports=[{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}])
    slices = [{**slice_([ep("10.0.0.9", ready=None)]),
               "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                         {"name": "dns", "port": 5353, "protocol": "UDP"}]}]
    st = compute_desired([s], slices, NODE, [])
    assert rs(st, "TCP", "10.20.30.41", 80) == {"10.0.0.9:8080"}
    assert rs(st, "UDP", "10.20.30.41", 53) == {"10.0.0.9:5353"}
