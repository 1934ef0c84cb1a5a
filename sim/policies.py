"""Old home of the scripted experts, kept so that existing code and notebooks import as before: the
interface and the rollout loop are in ``sim.experts``, the peg-in-hole task's experts in
``sim.peg_hole_experts`` (``POLICIES`` is ``PEG_HOLE_EXPERTS``, ``make_policy`` is ``make_expert``,
``ScriptedPolicy`` is ``ScriptedExpert``)."""

from sim.experts import ScriptedExpert, StepRecord, run_episode  # noqa: F401
from sim.peg_hole_experts import *  # noqa: F401,F403
from sim.peg_hole_experts import PEG_HOLE_EXPERTS, rim_direction, tilt_direction  # noqa: F401
from sim.task import make_expert, task_experts  # noqa: F401

ScriptedPolicy = ScriptedExpert
POLICIES = PEG_HOLE_EXPERTS
make_policy = make_expert
