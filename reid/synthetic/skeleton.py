"""Where a figure's joints fall for a look and a pose: one geometry for the drawing and the box."""

from __future__ import annotations

import math

from reid.synthetic.identities import Look
from reid.synthetic.poses import Pose


def body_frame(look: Look, pose: Pose, feet: float, h: float) -> tuple[float, float, float, float]:
    """Shoulder and hip half-widths (narrower when turned from the camera), then hip and
    shoulder heights, of a figure `h` tall standing at `feet`."""
    width = 0.45 if pose.facing in ("left", "right") else pose.turn
    return (0.115 * h * look.build * width, 0.085 * h * look.build * width,
            feet - 0.05 * h - 0.45 * h * look.legs, feet - 0.815 * h)


def leg_joints(look: Look, pose: Pose, x: float, hip_y: float, hw: float, h: float) -> list[list[tuple[float, float]]]:
    """[hip, knee, ankle, toe] of the two legs in image order (left first)."""
    thigh, shin = 0.235 * h * look.legs, 0.215 * h * look.legs
    side = pose.facing in ("left", "right")
    direction = 1 if pose.facing == "right" else -1
    legs = []
    for k in (0, 1):
        swing = pose.stride * math.sin(pose.phase + k * math.pi)
        bend = pose.bend * (0.4 + 0.6 * max(0.0, math.sin(pose.phase + k * math.pi + math.pi / 2)))
        hip = (x + (2 * k - 1) * hw * (0.2 if side else 0.55), hip_y)
        if side:
            knee = (hip[0] + direction * thigh * math.sin(swing), hip[1] + thigh * math.cos(swing))
            ankle = (knee[0] + direction * shin * math.sin(swing - bend), knee[1] + shin * math.cos(swing - bend))
            toe = (ankle[0] + direction * 0.07 * h, ankle[1] + 0.02 * h)
        else:
            spread = (2 * k - 1) * (0.02 * h + 0.06 * h * bend)
            knee = (hip[0] + spread, hip[1] + thigh * math.cos(swing) * math.cos(bend * 0.5))
            ankle = (knee[0] + spread * 0.3, knee[1] + shin * math.cos(swing - bend) * math.cos(bend * 0.5))
            toe = (ankle[0] + (2 * k - 1) * 0.01 * h, ankle[1] + 0.025 * h)
        legs.append([hip, knee, ankle, toe])
    return legs


def arm_joints(look: Look, pose: Pose, x: float, sh_y: float, sw: float, h: float) -> list[list[tuple[float, float]]]:
    """[shoulder, elbow, wrist] of the two arms in image order."""
    upper, fore = 0.16 * h, 0.15 * h
    side = pose.facing in ("left", "right")
    direction = 1 if pose.facing == "right" else -1
    arms = []
    for k in (0, 1):
        outward = 2 * k - 1
        shoulder = (x + outward * sw * (0.25 if side else 0.92), sh_y + 0.015 * h)
        if side:
            angle = -0.9 * pose.stride * math.sin(pose.phase + k * math.pi) + 0.6 * pose.arms[k]
            elbow = (shoulder[0] + direction * upper * math.sin(angle), shoulder[1] + upper * math.cos(angle))
            bend = angle + 0.3 + 0.8 * pose.stride
            wrist = (elbow[0] + direction * fore * math.sin(bend), elbow[1] + fore * math.cos(bend))
        else:
            angle = 0.12 + pose.arms[k]
            elbow = (shoulder[0] + outward * upper * math.sin(angle), shoulder[1] + upper * math.cos(angle))
            bend = angle * (0.6 if pose.arms[k] < 1.5 else 1.0) - 0.2
            wrist = (elbow[0] + outward * fore * math.sin(bend), elbow[1] + fore * math.cos(bend))
        arms.append([shoulder, elbow, wrist])
    return arms


def extent(look: Look, pose: Pose) -> tuple[float, float]:
    """Leftmost and rightmost reach of the figure, in figure heights from its centre line."""
    sw, hw, hip_y, sh_y = body_frame(look, pose, 0.0, 1.0)
    points = [p for limb in leg_joints(look, pose, 0.0, hip_y, hw, 1.0) + arm_joints(look, pose, 0.0, sh_y, sw, 1.0)
              for p in limb]
    xs = [p[0] for p in points]
    return min(min(xs) - 0.04, -1.3 * hw), max(max(xs) + 0.04, 1.3 * hw)
