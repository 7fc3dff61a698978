"""Narrations of a script, with varied wording: the rows of Nymeria's narration CSVs.

Windows group consecutive activities into spans of `MIN_WINDOW_S`..`MAX_WINDOW_S` seconds (a
longer single activity is cut into pieces), so every window lies inside the recording. Times
here are seconds since the Xsens start; the writer converts them to TIME_CODE nanoseconds.
Text columns follow Nymeria (DESIGN §3): atomic actions for ``atomic_action.csv``, posture /
hands-arms / legs-feet / focus attention for ``motion_narration.csv``, one activity summary for
``activity_summarization.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egotwin_bench.synthetic.script import Activity

MIN_WINDOW_S: float = 4.0
MAX_WINDOW_S: float = 8.0

ATOMIC_COLUMN = "Describe my atomic actions"
MOTION_COLUMNS: tuple[str, ...] = (
    "Describe my body posture",
    "Describe my hands/arms motion",
    "Describe my legs/feet motion",
    "Describe my focus attention",
)
ACTIVITY_COLUMN = "Describe my activity"

# {hand}, {target}: filled per activity. Several phrasings per kind; one is drawn per window.
_ATOMIC: dict[str, tuple[str, ...]] = {
    "walk": ("I walk over to {target}.", "I stroll towards {target}.", "I head across the room to {target}.",
             "I walk along a curved path to {target}."),
    "turn": ("I turn around.", "I turn to face the other way.", "I rotate my body in place.",
             "I turn on the spot."),
    "look_around": ("I look around the room.", "I glance left and right.", "I scan my surroundings.",
                    "I stand still and look around."),
    "look_down": ("I look down at my hands.", "I glance down at the floor.", "I lower my head and look down.",
                  "I look down in front of me."),
    "reach": ("I reach up for {target} with my {hand} hand.", "I stretch my {hand} arm towards {target}.",
              "With my {hand} hand I reach out to {target}."),
    "pick": ("I bend forward and pick up {target} with my {hand} hand.", "I pick {target} up using my {hand} hand.",
             "I lean over and grab {target} with my {hand} hand."),
    "crouch_pick": ("I crouch down and pick up {target} with my {hand} hand.",
                    "I squat to grab {target} with my {hand} hand.",
                    "I kneel down and take {target} in my {hand} hand."),
    "open_door": ("I open the door with my {hand} hand.", "I pull {target} open using my {hand} hand.",
                  "I grab the handle with my {hand} hand and open the door."),
}
_POSTURE = {
    "walk": ("I am upright and walking.", "My body is upright as I walk."),
    "turn": ("I stand upright and rotate.", "I am standing and turning."),
    "look_around": ("I stand upright.", "I am standing still."),
    "look_down": ("I stand with my head bowed.", "I am standing, head tilted down."),
    "reach": ("I stand upright, stretching forward.", "I am standing tall and leaning slightly forward."),
    "pick": ("I bend forward at the waist.", "My upper body leans forward."),
    "crouch_pick": ("I am crouching low.", "I squat down with my back bent."),
    "open_door": ("I stand facing the door.", "I am upright in front of the door."),
}
_HANDS = {
    "walk": ("My arms swing by my sides.", "My arms swing naturally."),
    "turn": ("My arms hang loosely.", "My arms stay relaxed."),
    "look_around": ("My arms rest by my sides.", "My hands hang down."),
    "look_down": ("I hold both hands in front of me.", "I raise both hands in front of my body."),
    "reach": ("My {hand} arm extends forward.", "I stretch out my {hand} arm."),
    "pick": ("My {hand} hand reaches down to grab.", "I lower my {hand} hand to take it."),
    "crouch_pick": ("My {hand} hand reaches to the floor.", "I stretch my {hand} arm down low."),
    "open_door": ("My {hand} hand pulls the handle.", "I grip and pull with my {hand} hand."),
}
_LEGS = {
    "walk": ("My legs take steady steps.", "I step forward one foot after the other."),
    "turn": ("My feet shuffle as I turn.", "I pivot on my feet."),
    "look_around": ("My feet stay planted.", "My legs are still."),
    "look_down": ("My feet stay in place.", "I stand on both feet."),
    "reach": ("My feet stay planted.", "I stand firmly on both legs."),
    "pick": ("My knees bend slightly.", "I bend my knees a little."),
    "crouch_pick": ("I bend my knees deeply.", "My knees are fully bent."),
    "open_door": ("My feet stay in place.", "I keep my feet planted."),
}
_FOCUS = {
    "walk": ("I look ahead towards {target}.", "My eyes are on the path to {target}."),
    "turn": ("I look where I am turning.", "My gaze follows the turn."),
    "look_around": ("I look around the room.", "My attention wanders around the room."),
    "look_down": ("I look at my hands.", "I focus on the floor in front of me."),
    "reach": ("I focus on {target}.", "My eyes are on {target}."),
    "pick": ("I focus on {target}.", "I look at {target}."),
    "crouch_pick": ("I look down at {target}.", "My attention is on {target} on the floor."),
    "open_door": ("I focus on the door handle.", "I watch the door as it opens."),
}


@dataclass(frozen=True)
class NarrationWindow:
    """One narration row: a span (seconds since the Xsens start) and its activities."""

    t0: float
    t1: float
    activities: tuple[Activity, ...]


def group_windows(script: list[Activity], seconds: float, rng: np.random.Generator) -> list[NarrationWindow]:
    """Consecutive activities grouped into windows of MIN_WINDOW_S..MAX_WINDOW_S s inside [0, seconds]."""
    pieces: list[tuple[float, float, Activity]] = []
    for act in script:
        t0, t1 = act.t0, min(act.t1, seconds)
        n = max(1, int(np.ceil((t1 - t0) / MAX_WINDOW_S)))
        edges = np.linspace(t0, t1, n + 1)
        pieces += [(float(a), float(b), act) for a, b in zip(edges[:-1], edges[1:])]
    windows: list[NarrationWindow] = []
    cur: list[tuple[float, float, Activity]] = []
    target = float(rng.uniform(MIN_WINDOW_S, MAX_WINDOW_S))
    for piece in pieces:
        if cur and piece[1] - cur[0][0] > MAX_WINDOW_S:
            windows.append(NarrationWindow(cur[0][0], cur[-1][1], tuple(p[2] for p in cur)))
            cur, target = [], float(rng.uniform(MIN_WINDOW_S, MAX_WINDOW_S))
        cur.append(piece)
        if cur[-1][1] - cur[0][0] >= target:
            windows.append(NarrationWindow(cur[0][0], cur[-1][1], tuple(p[2] for p in cur)))
            cur, target = [], float(rng.uniform(MIN_WINDOW_S, MAX_WINDOW_S))
    if cur:
        windows.append(NarrationWindow(cur[0][0], cur[-1][1], tuple(p[2] for p in cur)))
    return windows


def _fill(template: str, act: Activity) -> str:
    return template.format(hand=act.hand or "right", target=act.target or "the room")


def _phrase(table: dict[str, tuple[str, ...]], act: Activity, rng: np.random.Generator) -> str:
    options = table[act.kind]
    return _fill(options[int(rng.integers(len(options)))], act)


def _join(sentences: list[str]) -> str:
    """Sentences joined with 'then' (repeats collapsed)."""
    out: list[str] = []
    for s in sentences:
        if not out or out[-1] != s:
            out.append(s)
    if len(out) == 1:
        return out[0]
    body = [out[0].rstrip(".")] + ["then " + _lower_first(s).rstrip(".") for s in out[1:]]
    return ", ".join(body) + "."


def _lower_first(sentence: str) -> str:
    """Lower-case the first word unless it is "I"."""
    return sentence if sentence.startswith("I ") else sentence[0].lower() + sentence[1:]


def atomic_text(window: NarrationWindow, rng: np.random.Generator) -> str:
    return _join([_phrase(_ATOMIC, a, rng) for a in window.activities])


def motion_texts(window: NarrationWindow, rng: np.random.Generator) -> dict[str, str]:
    """The four motion_narration.csv columns of a window."""
    tables = (_POSTURE, _HANDS, _LEGS, _FOCUS)
    return {col: _join([_phrase(tab, a, rng) for a in window.activities]) for col, tab in zip(MOTION_COLUMNS, tables)}


def activity_summary(script: list[Activity], location_kind: str = "room") -> str:
    """One sentence for activity_summarization.csv."""
    kinds = {a.kind for a in script}
    parts = ["walk around the " + location_kind]
    if kinds & {"pick", "crouch_pick", "reach"}:
        parts.append("pick up and reach for objects")
    if "open_door" in kinds:
        parts.append("open a door")
    return "I " + ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] + "."
