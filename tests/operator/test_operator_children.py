"""The children view: newest version wins, our own write's echo is no news, deletions are."""

from __future__ import annotations

from jubako.operator.children import Children
from jubako.operator.render import Owner

OWNER = Owner("demo", "ns", "uid-1")


def _child(name, rv, uid="uid-1", kind="Service", **extra):
    return {"apiVersion": "v1", "kind": kind, "metadata": {
        "name": name, "namespace": "ns", "resourceVersion": str(rv),
        "ownerReferences": [{"apiVersion": "serving.jubako.dev/v1alpha1", "kind": "BentoDeployment",
                             "name": "demo", "uid": uid, "controller": True}]}, **extra}


def test_watch_events_and_own_writes_keep_the_newest_version():
    view = Children()
    view.remember(_child("demo", 5, spec={"v": 5}))
    assert not view.observe("ADDED", _child("demo", 4, spec={"v": 4}), "Service", "v1")  # lagging
    assert not view.observe("MODIFIED", _child("demo", 5, spec={"v": 5}), "Service", "v1")  # our echo
    assert view.of(OWNER)[("Service", "demo")]["spec"] == {"v": 5}
    assert view.observe("MODIFIED", _child("demo", 6, spec={"v": 6}), "Service", "v1")  # a hand edit
    assert view.of(OWNER)[("Service", "demo")]["spec"] == {"v": 6}
    assert view.observe("DELETED", _child("demo", 7), "Service", "v1")
    assert view.of(OWNER) == {}


def test_only_this_owners_children_and_copies_are_handed_out():
    view = Children()
    view.load([_child("a", 1), _child("b", 1, uid="old-uid"),
               {"metadata": {"name": "stray", "namespace": "ns"}}], "Service", "v1")
    mine = view.of(OWNER)
    assert list(mine) == [("Service", "a")]  # a previous object of the same name owns "b"
    mine[("Service", "a")]["metadata"]["name"] = "changed"
    assert view.of(OWNER)[("Service", "a")]["metadata"]["name"] == "a"


def test_pods_by_deployment_without_terminating_ones():
    view = Children()
    label = {"serving.jubako.dev/deployment": "demo"}
    view.load([{"metadata": {"name": "p1", "namespace": "ns", "labels": label, "resourceVersion": "1"}},
               {"metadata": {"name": "p2", "namespace": "ns", "labels": label, "resourceVersion": "1",
                             "deletionTimestamp": "2026-01-01T00:00:00Z"}},
               {"metadata": {"name": "other", "namespace": "ns", "resourceVersion": "1"}}], "Pod", "v1")
    assert [p["metadata"]["name"] for p in view.pods("ns", "demo")] == ["p1"]
    assert view.observe_pod("DELETED", {"metadata": {"name": "p1", "namespace": "ns", "labels": label}}) == "demo"
    assert view.pods("ns", "demo") == []
