"""A person drawn over the background: limbs, kit and its design, number, head and gear."""

from __future__ import annotations

import math

import numpy as np
from PIL import ImageDraw

from reid.synthetic.identities import Look
from reid.synthetic.palette import RGB, load_font
from reid.synthetic.poses import Pose
from reid.synthetic.skeleton import arm_joints, body_frame, leg_joints


def _shade(colour: RGB, factor: float) -> RGB:
    return tuple(int(min(255, c * factor)) for c in colour)


def _limb(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], width: float, colour: RGB) -> None:
    """A thick polyline with round joints."""
    w = max(1.0, width)
    draw.line(points, fill=colour, width=max(1, round(w)))
    for x, y in points:
        draw.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=colour)


def _lerp(p: tuple[float, float], q: tuple[float, float], t: float) -> tuple[float, float]:
    return p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t


def _draw_tattoos(draw: ImageDraw.ImageDraw, look: Look, limb: int, points: list, thick: float, dim: float) -> None:
    """The player's ink marks on one limb, placed along its polyline."""
    ink = _shade(tuple((s + 2 * d) // 3 for s, d in zip(look.skin, (30, 40, 70), strict=True)), 0.55 * dim)
    segments = len(points) - 1
    for which, along, across, size in look.tattoos:
        if which != limb:
            continue
        i = min(int(along * segments), segments - 1)
        (x0, y0), (x1, y1) = points[i], points[i + 1]
        t = along * segments - i
        length = math.hypot(x1 - x0, y1 - y0) or 1.0
        nx, ny = -(y1 - y0) / length, (x1 - x0) / length
        cx, cy = x0 + (x1 - x0) * t + nx * across * thick, y0 + (y1 - y0) * t + ny * across * thick
        r = size * thick * 0.5
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=ink)


def _draw_leg(draw: ImageDraw.ImageDraw, look: Look, leg: list, k: int, h: float, dim: float) -> None:
    hip, knee, ankle, toe = leg
    thick = 0.078 * h * look.build
    kit = look.kit
    if kit.referee:
        _limb(draw, [hip, knee, ankle], thick * 1.25, _shade(kit.shorts, dim))
    else:
        _limb(draw, [hip, knee], thick, _shade(look.skin, dim))
        _limb(draw, [knee, ankle], thick * 0.8, _shade(look.skin, dim))
        _draw_tattoos(draw, look, 2 + k, [knee, ankle], thick * 0.8, dim)
        if look.leg_sleeve and look.leg_sleeve[0] == k:
            _, colour, length = look.leg_sleeve
            if length > 0.5:
                covered = [hip, knee, _lerp(knee, ankle, 2 * length - 1)]
            else:
                covered = [hip, _lerp(hip, knee, 2 * length)]
            _limb(draw, covered, thick * 1.05, _shade(colour, dim))
        if look.knee_pad and look.knee_pad[0] == k:
            _limb(draw, [_lerp(knee, hip, 0.12), _lerp(knee, ankle, 0.15)], thick * 1.2, _shade(look.knee_pad[1], dim))
        _limb(draw, [ankle, _lerp(ankle, knee, look.sock_height)], thick * 0.85, _shade(look.socks, dim))
    _limb(draw, [ankle, toe], 0.055 * h, _shade(look.shoes, dim))
    sole = [(ankle[0], ankle[1] + 0.02 * h), (toe[0], toe[1] + 0.018 * h)]
    draw.line(sole, fill=_shade(look.sole, dim), width=max(1, round(0.012 * h)))


def _draw_arm(draw: ImageDraw.ImageDraw, look: Look, arm: list, k: int, h: float, dim: float) -> None:
    shoulder, elbow, wrist = arm
    thick = 0.058 * h * look.build
    skin = _shade(look.skin, dim)
    _limb(draw, [shoulder, elbow, wrist], thick, skin)
    _draw_tattoos(draw, look, k, [shoulder, elbow, wrist], thick, dim)
    if look.kit.referee:
        _limb(draw, [shoulder, _lerp(shoulder, elbow, 0.6)], thick * 1.3, _shade(look.kit.shirt, dim))
    elif look.undershirt:
        _limb(draw, [shoulder, _lerp(shoulder, elbow, 0.5)], thick * 1.2, _shade(look.undershirt, dim))
    if look.arm_sleeve and look.arm_sleeve[0] == k:
        covered = [_lerp(shoulder, elbow, 0.3), elbow, _lerp(elbow, wrist, 0.9)]
        _limb(draw, covered, thick * 1.02, _shade(look.arm_sleeve[1], dim))
    if look.wrist_tape and look.wrist_tape[0] == k:
        _limb(draw, [_lerp(elbow, wrist, 0.82), wrist], thick * 1.1, _shade(look.wrist_tape[1], dim))
    r = thick * 0.7
    hand = _lerp(elbow, wrist, 1.12)
    draw.ellipse([hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r], fill=skin)


def _draw_torso(draw: ImageDraw.ImageDraw, look: Look, pose: Pose, x: float, sh_y: float, hip_y: float,
                sw: float, hw: float, h: float) -> None:
    kit = look.kit
    neck = 0.045 * h * (pose.turn if pose.facing in ("front", "back") else 0.6)
    waist = hip_y - 0.02 * h
    if not kit.referee:
        draw.polygon([(x - hw * 1.15, waist), (x + hw * 1.15, waist), (x + hw * 1.3, hip_y + 0.2 * h),
                      (x + 0.01 * h, hip_y + 0.19 * h), (x, hip_y + 0.1 * h), (x - 0.01 * h, hip_y + 0.19 * h),
                      (x - hw * 1.3, hip_y + 0.2 * h)], fill=kit.shorts)
        for s in (-1, 1):
            draw.line([(x + s * hw * 1.17, waist), (x + s * hw * 1.3, hip_y + 0.2 * h)], fill=kit.trim,
                      width=max(1, round(0.015 * h)))
    shoulders = [(x - sw * 0.95, sh_y + 0.01 * h), (x + sw * 0.95, sh_y + 0.01 * h)]
    for sx, sy in shoulders:
        r = 0.035 * h * look.build
        fill = look.undershirt or (kit.shirt if kit.referee else look.skin)
        draw.ellipse([sx - r, sy - r * 0.6, sx + r, sy + r * 1.2], fill=fill)
    body = [(x - neck, sh_y - 0.015 * h), (x - sw * 0.7, sh_y - 0.005 * h), (x - sw * 0.8, sh_y + 0.1 * h),
            (x - hw * 1.12, waist + 0.02 * h), (x + hw * 1.12, waist + 0.02 * h), (x + sw * 0.8, sh_y + 0.1 * h),
            (x + sw * 0.7, sh_y - 0.005 * h), (x + neck, sh_y - 0.015 * h)]
    draw.polygon(body, fill=kit.shirt)
    _draw_pattern(draw, kit.pattern, kit.trim, x, (sh_y + 0.03 * h, waist + 0.02 * h),
                  (sw * 0.78, hw * 1.1), h)
    neck_line = [(x - neck, sh_y - 0.015 * h), (x, sh_y + (0.045 if pose.facing == "front" else 0.01) * h),
                 (x + neck, sh_y - 0.015 * h)]
    draw.polygon(neck_line, fill=look.undershirt or look.skin)
    draw.line(neck_line, fill=kit.trim, width=max(1, round(0.012 * h)))


def _draw_pattern(draw: ImageDraw.ImageDraw, pattern: str, colour: RGB, x: float, ys: tuple[float, float],
                  halves: tuple[float, float], h: float) -> None:
    """The shirt's design inside the torso, whose half-width runs from `halves[0]` at the top
    to `halves[1]` at the waist: a team cue of texture rather than colour."""
    (y0, y1), (a, b) = ys, halves

    def at(u: float, v: float) -> tuple[float, float]:  # u across (-1..1), v down (0..1)
        return x + u * (a + (b - a) * v), y0 + (y1 - y0) * v

    line = max(1, round(0.014 * h))
    if pattern in ("pinstripes", "checks"):
        for u in np.linspace(-0.85, 0.85, 7 if pattern == "pinstripes" else 5):
            draw.line([at(u, 0), at(u, 1)], fill=colour, width=line)
    if pattern in ("hoops", "checks"):
        for v in np.linspace(0.15, 0.85, 4):
            d = 0.06 if pattern == "hoops" else 0.025
            draw.polygon([at(-1, v - d), at(1, v - d), at(1, v + d), at(-1, v + d)], fill=colour)
    if pattern == "panels":
        for s in (-1, 1):
            draw.polygon([at(s * 0.62, 0), at(s, 0), at(s, 1), at(s * 0.62, 1)], fill=colour)
    if pattern == "sash":
        draw.polygon([at(-1, 0), at(-0.55, 0), at(1, 0.75), at(1, 1), at(0.75, 1), at(-1, 0.3)], fill=colour)


def _draw_number(draw: ImageDraw.ImageDraw, look: Look, pose: Pose, x: float, sh_y: float, h: float) -> None:
    """The jersey number: small on the chest, large on the back (with the surname above)."""
    kit = look.kit
    if pose.facing not in ("front", "back"):
        return
    back = pose.facing == "back"
    size = int(h * (0.15 if back else 0.09) * (0.6 if kit.referee else 1.0) * pose.turn)
    if size < 4:
        return
    cy = sh_y + (0.15 if back else 0.11) * h
    font = load_font(kit.font, size)
    draw.text((x, cy), look.number, fill=kit.digits, font=font, anchor="mm",
              stroke_width=max(0, round(size * 0.05)), stroke_fill=kit.trim)
    name_size = int(h * 0.035 * pose.turn)
    if back and kit.names and name_size >= 4:
        draw.text((x, sh_y + 0.055 * h), look.name, fill=kit.digits, font=load_font(kit.font, name_size), anchor="mm")


def _draw_head(draw: ImageDraw.ImageDraw, look: Look, pose: Pose, x: float, sh_y: float, h: float) -> None:
    rx, ry = 0.052 * h * look.head, 0.066 * h * look.head
    cy = sh_y - 0.035 * h - ry
    side = pose.facing in ("left", "right")
    direction = 1 if pose.facing == "right" else -1
    cx = x + (direction * 0.01 * h if side else 0)
    hair, style = look.hair, look.hair_style
    if style == "afro":
        draw.ellipse([cx - rx * 1.45, cy - ry * 1.45, cx + rx * 1.45, cy + ry * 0.9], fill=hair)
    elif style in ("long", "braids"):
        draw.rounded_rectangle([cx - rx * 1.15, cy - ry * 1.05, cx + rx * 1.15, sh_y + 0.06 * h], radius=rx, fill=hair)
    _limb(draw, [(x, sh_y), (cx, cy + ry * 0.6)], 0.05 * h * look.build, look.skin)
    head = [cx - rx, cy - ry, cx + rx, cy + ry]
    draw.ellipse(head, fill=look.skin)
    if pose.facing == "back" and style != "bald":
        draw.ellipse([cx - rx * 1.04, cy - ry * 1.06, cx + rx * 1.04, cy + ry * 0.75], fill=hair)
    elif style == "buzz":
        draw.chord([cx - rx, cy - ry * 1.02, cx + rx, cy + ry * 0.4], 180, 360, fill=hair)
    elif style in ("short", "bun", "long", "braids"):
        start, end = (140, 400) if not side else ((160, 350) if direction > 0 else (190, 380))
        draw.chord([cx - rx * 1.06, cy - ry * 1.08, cx + rx * 1.06, cy + ry * 0.6], start, end, fill=hair)
    if style == "bun":
        r = rx * 0.45
        draw.ellipse([cx - r, cy - ry * 1.05 - 1.6 * r, cx + r, cy - ry * 1.05 + 0.4 * r], fill=hair)
    if style == "braids":
        for i in (-1, 0, 1):
            bx = cx + i * rx * 0.6
            draw.line([(bx, cy), (bx, sh_y + 0.07 * h)], fill=_shade(hair, 1.6), width=max(1, round(0.008 * h)))
    if pose.facing == "front":
        if look.beard:
            draw.chord([cx - rx * 0.95, cy - ry * 0.1, cx + rx * 0.95, cy + ry * 1.02], 0, 180, fill=_shade(hair, 1.2))
        for s in (-1, 1):
            ex, ey, er = cx + s * rx * 0.38, cy - ry * 0.05, max(0.5, 0.008 * h)
            draw.ellipse([ex - er, ey - er, ex + er, ey + er], fill=(25, 20, 20))
    elif side:
        nose = cx + direction * rx
        draw.polygon([(nose, cy - ry * 0.1), (nose + direction * 0.012 * h, cy + ry * 0.2), (nose, cy + ry * 0.3)],
                     fill=look.skin)
    if look.headband:
        top = cy - ry * 0.6
        draw.rectangle([cx - rx * 1.03, top, cx + rx * 1.03, top + ry * 0.28], fill=look.headband)


def draw_person(draw: ImageDraw.ImageDraw, look: Look, pose: Pose, x: float, feet: float, h: float) -> None:
    """A player `h` pixels tall, feet centred on (x, feet): legs, shorts, jersey, arms, head."""
    side = pose.facing in ("left", "right")
    sw, hw, hip_y, sh_y = body_frame(look, pose, feet, h)
    legs = leg_joints(look, pose, x, hip_y, hw, h)
    arms = arm_joints(look, pose, x, sh_y, sw, h)
    near = 0 if pose.facing == "left" else 1
    if side:
        _draw_arm(draw, look, arms[1 - near], 1 - near, h, 0.8)
        _draw_leg(draw, look, legs[1 - near], 1 - near, h, 0.8)
        _draw_leg(draw, look, legs[near], near, h, 1.0)
    else:
        for k in (0, 1):
            _draw_leg(draw, look, legs[k], k, h, 1.0)
    _draw_torso(draw, look, pose, x, sh_y, hip_y, sw, hw, h)
    for k in ((near,) if side else (0, 1)):
        _draw_arm(draw, look, arms[k], k, h, 1.0)
    _draw_number(draw, look, pose, x, sh_y, h)
    _draw_head(draw, look, pose, x, sh_y, h)
