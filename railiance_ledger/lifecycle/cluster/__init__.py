"""Cluster operations the stages and rollback share, each a public module of its own.

objects     API groups, the field manager, cleaning, splitting and comparing objects
manifests   the content-addressed store of rendered manifests
rollout     waiting for pods and Deployments, live-vs-rendered comparison
routing     routing read, weighted shift, production routing verdict, read-back
probes      declared checks, smoke, outside-in probes
canary      removing a canary (routing, then the release) with a typed result per step
"""
