"""KUKA iiwa with a wrist F/T joint and a peg, driven by a Cartesian impedance controller.

The controller runs in torque mode at the physics rate:
``tau = J^T [Kp (x_d - x) - Kd v; Ko e_R - Do w] + bias(q, qd) + N^T M_diag (Kn (q_0 - q) - Dn qd)``
with ``bias`` the gravity + Coriolis torques and ``N`` the dynamically consistent nullspace projector.
The model terms (Jacobian, mass matrix, bias) are refreshed at ``model_update_hz``; between refreshes
the tip pose is propagated with the Jacobian (``x ~ x0 + Jv (q - q0)``), which keeps the Python per
substep to one state query, a few small matrix products and one torque command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet as p

from sim.assets import PEG_MARGIN, PEG_MASS
from sim.config import ControllerConfig
from sim.detmath import inv, matmul

ARM_JOINTS = tuple(range(7))
FT_JOINT = 7  # fixed joint between link 7 and the peg, with a force/torque sensor
PEG_LINK = 7
REST_POSE = np.array([0.0, 0.45, 0.0, -1.75, 0.0, 0.95, 0.0])  # rad, elbow up, flange down
GRAVITY = 9.81


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix of an (x, y, z, w) quaternion."""
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def orientation_error(q_desired: np.ndarray, q_current: np.ndarray) -> np.ndarray:
    """(3,) rotation vector (rad, world frame) taking ``q_current`` to ``q_desired`` (small-angle form)."""
    x1, y1, z1, w1 = q_desired
    x2, y2, z2, w2 = -q_current[0], -q_current[1], -q_current[2], q_current[3]  # conjugate
    w = w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2
    v = np.array([
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ])
    return 2.0 * v if w >= 0 else -2.0 * v


@dataclass
class TipState:
    """Peg-tip state, world frame: position (m), orientation (x, y, z, w), linear (m/s) and angular
    (rad/s) velocity."""

    pos: np.ndarray
    quat: np.ndarray
    lin_vel: np.ndarray
    ang_vel: np.ndarray


def build_arm_with_peg(client: int, urdf: Path, peg_hull: np.ndarray, margin: float) -> int:
    """Create the arm as a multibody whose only collision shape is the peg's convex hull.

    PyBullet's URDF importer gives every mesh a fixed 1 mm collision margin that ``changeDynamics``
    cannot reach; the margin rounds the peg's edges like a chamfer and lets pegs landing on the rim
    slide in. So the URDF is loaded once as a reference, and an identical multibody (same kinematics,
    masses, inertias, visuals; verified to 1e-7 in the tests) is created with ``createMultiBody``, whose
    peg hull takes a small margin. The arm links have no collision shapes: in the workspace
    (tip above the floor) they are at least 8 cm above anything they could touch.

    Args:
        peg_hull: (N, 3) vertices of the peg's collision hull in the peg link frame, m.
        margin: m, collision margin given to the hull (its faces should be shrunk by it).
    """
    ref = p.loadURDF(str(urdf), useFixedBase=True, flags=p.URDF_USE_INERTIA_FROM_FILE,
                     physicsClientId=client)
    n = p.getNumJoints(ref, physicsClientId=client)
    visuals = {d[1]: d for d in p.getVisualShapeData(ref, physicsClientId=client)}

    def visual(link: int) -> int:
        d = visuals[link]
        return p.createVisualShape(p.GEOM_MESH, fileName=d[4].decode(), meshScale=d[3], rgbaColor=d[7],
                                   visualFramePosition=d[5], visualFrameOrientation=d[6],
                                   physicsClientId=client)

    links: dict[str, list] = {k: [] for k in ("mass", "col", "vis", "pos", "orn", "ipos", "iorn",
                                              "parent", "type", "axis", "inertia")}
    for j in range(n):
        info = p.getJointInfo(ref, j, physicsClientId=client)
        dyn = p.getDynamicsInfo(ref, j, physicsClientId=client)
        parent = info[16]
        pdyn = p.getDynamicsInfo(ref, parent, physicsClientId=client)
        # getJointInfo gives the joint frame in the parent's inertial frame, with the orientation
        # inverted (checked against forward kinematics); createMultiBody wants it in the parent's
        # link frame.
        orn = p.invertTransform([0, 0, 0], info[15])[1]
        pos, orn = p.multiplyTransforms(pdyn[3], pdyn[4], info[14], orn)
        links["pos"].append(pos)
        links["orn"].append(orn)
        links["mass"].append(dyn[0])
        links["inertia"].append(dyn[2])
        links["ipos"].append(dyn[3])
        links["iorn"].append(dyn[4])
        links["parent"].append(parent + 1)
        links["type"].append(info[2])
        links["axis"].append(info[13])
        links["vis"].append(visual(j))
        links["col"].append(-1)
    peg = n - 1
    hull = p.createCollisionShape(p.GEOM_MESH, vertices=np.asarray(peg_hull).tolist(),
                                  physicsClientId=client)
    links["col"][peg] = hull
    # changeDynamics(collisionMargin) on a multibody link sets the margin of the link's compound
    # wrapper, not of the hull inside it; on a single-shape base it reaches the shape itself. The hull
    # is shared, so a static, invisible holder body far away sets the margin the peg link uses.
    holder = p.createMultiBody(0.0, hull, -1, basePosition=[0.0, 0.0, -100.0], physicsClientId=client)
    p.changeDynamics(holder, -1, collisionMargin=margin, physicsClientId=client)
    base = p.getDynamicsInfo(ref, -1, physicsClientId=client)
    uid = p.createMultiBody(
        baseMass=0.0, baseCollisionShapeIndex=-1, baseVisualShapeIndex=visual(-1),
        basePosition=[0, 0, 0], baseInertialFramePosition=base[3], baseInertialFrameOrientation=base[4],
        linkMasses=links["mass"], linkCollisionShapeIndices=links["col"],
        linkVisualShapeIndices=links["vis"], linkPositions=links["pos"], linkOrientations=links["orn"],
        linkInertialFramePositions=links["ipos"], linkInertialFrameOrientations=links["iorn"],
        linkParentIndices=links["parent"], linkJointTypes=links["type"], linkJointAxis=links["axis"],
        physicsClientId=client)
    p.removeBody(ref, physicsClientId=client)
    for j in range(n):  # createMultiBody derives inertia from collision shapes; use the URDF's
        p.changeDynamics(uid, j, localInertiaDiagonal=links["inertia"][j], physicsClientId=client)
    return uid


class Robot:
    """The arm, its peg and its controller, in one PyBullet client.

    Args:
        client: PyBullet physics client id.
        urdf: generated robot URDF (``sim.assets.robot_urdf``).
        peg_hull: (N, 3) collision hull vertices of the peg in its link frame (``sim.assets.peg_hull``).
        peg_length: m, distance from flange to peg tip.
        controller: gains and limits.
        physics_dt: s, physics time step.
    """

    def __init__(self, client: int, urdf: Path, peg_hull: np.ndarray, peg_length: float,
                 controller: ControllerConfig, physics_dt: float) -> None:
        self.client = client
        self.cfg = controller
        self.peg_length = peg_length
        self.uid = build_arm_with_peg(client, urdf, peg_hull, PEG_MARGIN)
        p.enableJointForceTorqueSensor(self.uid, FT_JOINT, True, physicsClientId=client)
        for link in range(-1, PEG_LINK + 1):
            p.changeDynamics(self.uid, link, linearDamping=0.0, angularDamping=0.0,
                             jointDamping=0.0, physicsClientId=client)
        # Tip in the peg link's centre-of-mass frame (calculateJacobian wants COM-relative positions).
        self._tip_in_com = np.array([0.0, 0.0, peg_length / 2])
        self._query_joints = list(ARM_JOINTS) + [FT_JOINT]
        self._arm_joints = list(ARM_JOINTS)
        self._zeros7 = [0.0] * 7
        self.update_every = max(1, int(round(1.0 / (controller.model_update_hz * physics_dt))))
        self.target_pos = np.zeros(3)
        self.target_quat = np.array([1.0, 0.0, 0.0, 0.0])
        self.posture = REST_POSE.copy()
        self._substep = 0
        # (7,) N m, the arm's joint torques commanded at the last physics substep (PyBullet reports 0
        # as the applied torque under TORQUE_CONTROL, so a joint-torque sensor reads this)
        self.last_torque = np.zeros(7)
        self._stiffness = np.array([controller.kp_pos] * 3 + [controller.kp_rot] * 3)
        self._damping = np.array([controller.kd_pos] * 3 + [controller.kd_rot] * 3)

    # ----------------------------------------------------------------------------------------- state
    def tip_state(self) -> TipState:
        """Exact peg-tip pose and velocity from forward kinematics."""
        ls = p.getLinkState(self.uid, PEG_LINK, computeLinkVelocity=1, computeForwardKinematics=1,
                            physicsClientId=self.client)
        com, quat = np.asarray(ls[0]), np.asarray(ls[1])
        offset = matmul(quat_to_matrix(quat), self._tip_in_com)
        ang = np.asarray(ls[7])
        return TipState(com + offset, quat, np.asarray(ls[6]) + np.cross(ang, offset), ang)

    def reset(self, q: np.ndarray) -> None:
        """Place the arm at joint positions ``q`` (7,), at rest, holding its pose."""
        for j, qj in zip(ARM_JOINTS, q):
            p.resetJointState(self.uid, j, float(qj), 0.0, physicsClientId=self.client)
        # Torque mode needs PyBullet's default velocity motors off.
        p.setJointMotorControlArray(self.uid, list(ARM_JOINTS), p.VELOCITY_CONTROL,
                                    forces=self._zeros7, physicsClientId=self.client)
        tip = self.tip_state()
        self.target_pos = tip.pos.copy()
        self.target_quat = tip.quat.copy()
        self.posture = np.asarray(q, dtype=float).copy()
        self._substep = 0

    def solve_ik(self, tip_pos: np.ndarray, tip_quat: np.ndarray, iterations: int = 4) -> np.ndarray:
        """Joint positions (7,) that put the peg tip at ``tip_pos`` with orientation ``tip_quat``.

        PyBullet's IK targets the link frame; the tip offset is corrected by re-solving against the
        measured tip, which converges in a few iterations. Leaves the arm at the solution.
        """
        goal = np.asarray(tip_pos, dtype=float)
        aim = goal.copy()
        q = REST_POSE.copy()
        # PyBullet's IK iterates from the current joint state: seed it with the rest pose, not the
        # singular all-zero pose, or it lands in a twisted elbow configuration.
        for j, qj in zip(ARM_JOINTS, q):
            p.resetJointState(self.uid, j, float(qj), 0.0, physicsClientId=self.client)
        for _ in range(iterations):
            q = np.asarray(p.calculateInverseKinematics(
                self.uid, PEG_LINK, aim.tolist(), list(tip_quat), restPoses=REST_POSE.tolist(),
                lowerLimits=[-2.96, -2.09, -2.96, -2.09, -2.96, -2.09, -3.05],
                upperLimits=[2.96, 2.09, 2.96, 2.09, 2.96, 2.09, 3.05],
                jointRanges=[5.9, 4.2, 5.9, 4.2, 5.9, 4.2, 6.1], maxNumIterations=200,
                residualThreshold=1e-6, physicsClientId=self.client))[:7]
            for j, qj in zip(ARM_JOINTS, q):
                p.resetJointState(self.uid, j, float(qj), 0.0, physicsClientId=self.client)
            aim = aim + (goal - self.tip_state().pos)
        return q

    # ------------------------------------------------------------------------------------ controller
    def _update_model(self, q: np.ndarray, qd: np.ndarray) -> None:
        """Refresh the model terms and fold the whole control law into ``tau = a + C [q; qd]``.

        With the Jacobian, the bias torques and the projector held until the next refresh, the
        impedance law is affine in the joint state: ``wrench = K (e_ref - J (q - q0)) - D J qd`` and
        ``null = M_diag (Kn (q_post - q) - Dn qd)``. Precomputing ``a`` and ``C`` leaves one 7x14
        product per substep.
        """
        c, cfg = self.client, self.cfg
        ql, qdl = q.tolist(), qd.tolist()
        ls = p.getLinkState(self.uid, PEG_LINK, computeForwardKinematics=1, physicsClientId=c)
        com, quat = np.asarray(ls[0]), np.asarray(ls[1])
        x0 = com + matmul(quat_to_matrix(quat), self._tip_in_com)
        e_ref = np.concatenate([self.target_pos - x0, orientation_error(self.target_quat, quat)])
        jl, ja = p.calculateJacobian(self.uid, PEG_LINK, self._tip_in_com.tolist(), ql, self._zeros7,
                                     self._zeros7, physicsClientId=c)
        J = np.vstack([np.asarray(jl), np.asarray(ja)])
        M = np.asarray(p.calculateMassMatrix(self.uid, ql, physicsClientId=c))
        bias = np.asarray(p.calculateInverseDynamics(self.uid, ql, qdl, self._zeros7, physicsClientId=c))
        Minv = inv(M)
        lam = inv(matmul(matmul(J, Minv), J.T) + 1e-6 * np.eye(6))
        # Dynamically consistent nullspace projector (transposed), so posture torques do not disturb the tip.
        null_t = np.eye(7) - matmul(matmul(matmul(J.T, lam), J), Minv)
        null_m = null_t * np.diag(M)[None, :]
        K, D = self._stiffness, self._damping
        KJ, DJ = K[:, None] * J, D[:, None] * J
        self._affine_a = matmul(J.T, K * e_ref + matmul(KJ, q)) + bias + cfg.kp_null * matmul(null_m, self.posture)
        self._affine_c = np.hstack([-matmul(J.T, KJ) - cfg.kp_null * null_m, -matmul(J.T, DJ) - cfg.kd_null * null_m])

    def begin_step(self) -> None:
        """Call after changing the target: the next substep refreshes the model with it."""
        self._substep = 0

    def control_substep(self, state: np.ndarray) -> None:
        """Compute and apply the joint torques for one physics substep.

        Args:
            state: (14,) joint positions (rad) then velocities (rad/s).
        """
        if self._substep % self.update_every == 0:
            self._update_model(state[:7], state[7:])
        self._substep += 1
        tau = self._affine_a + (self._affine_c * state).sum(axis=1)  # sim.detmath.matmul, inlined: 1 kHz
        p.setJointMotorControlArray(self.uid, self._arm_joints, p.TORQUE_CONTROL, forces=tau.tolist(),
                                    physicsClientId=self.client)
        self.last_torque = tau

    def substep_state(self) -> tuple[np.ndarray, tuple]:
        """(14,) joint positions and velocities, and the raw F/T joint reaction (6-tuple), in one query."""
        states = p.getJointStates(self.uid, self._query_joints, physicsClientId=self.client)
        arm = states[:7]
        return np.array([s[0] for s in arm] + [s[1] for s in arm]), states[7][2]

    def peg_weight_in_sensor(self, quat: np.ndarray) -> np.ndarray:
        """(6,) F/T joint reading caused by the peg's weight alone at orientation ``quat``.

        PyBullet reports the wrench the joint applies to the child (the peg), in the sensor (peg)
        frame: a hanging peg reads m g along world +z (measured: -0.981 N on sensor z when the peg
        points down). The moment is about the joint origin.
        """
        R = quat_to_matrix(quat)
        f_world = np.array([0.0, 0.0, PEG_MASS * GRAVITY])
        com = np.array([0.0, 0.0, self.peg_length / 2])
        f = matmul(R.T, f_world)
        return np.concatenate([f, np.cross(com, f)])
