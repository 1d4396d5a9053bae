"""Synthetic posed image sequences for demos and tests (no dataset needed).

Textured 3D scenes built from axis-aligned rectangles are rendered by a vectorised numpy ray
caster with mip-mapped textures and baked soft lighting, with exact camera poses and
intrinsics. World frame: metres, z up. Poses: 4x4 camera-to-world, OpenCV camera axes (x right,
y down, z forward), as in the DSAC*/ACE layout.

Scene kinds
    ``"room"``        a furnished 5 x 4 x 2.6 m room (kitchen counter, cabinets, shelf, table,
                      posters...); every texture is unique. A hand-held camera 1-2 m from the
                      counter, like the 7-Scenes redkitchen sequence.
    ``"repetitive"``  an 8 x 4 x 2.6 m room whose long walls, shelves, floor tiles, lights and
                      ceiling repeat every metre, with only a few unique things, seen by a
                      robot-like camera (steady height, pitch and heading) sweeping three
                      modules: single views are ambiguous, the case sequence
                      relocalization is for.
    ``"courtyard"``   building scale: 3-storey facades (windows, shop fronts, pillars,
                      balconies) around a paved court ``size_m`` long (12-120 m) and 16 m
                      deep, seen by a robot driving along it 4-10 m from the main facade.

Rendering cost (640x480, one core): about 30 ms per frame plus ~6 ms of camera noise and
1 ms of JPEG encoding; ``benchmarks/synthetic_render_speed.py`` measures it.

Public API
    ``generate_scene(out_dir, kind="room", mapping_frames=300, query_frames=200, width=640,
    height=480, seed=0, noise="low", ...) -> Path``
        Write a scene in the DSAC*/ACE layout (train = mapping, test = query, ``scene.json``);
        ``seqace_ros.data.scene_folder.load_split`` reads it.
    ``make_scene(kind="room", seed=0, ppm=256, size_m=None) -> Scene``
        Build the geometry, textures and lighting (same seed, same scene).
    ``make_trajectories(scene, n_map, n_query, seed=0, block_length=50, speed=0.25)
    -> Trajectories``
        A smooth 30 Hz mapping trajectory and a query trajectory in blocks of consecutive
        frames near it (frame numbers 0-49, 100-149, ...); ``.mapping``/``.query`` hold
        ``poses`` (N, 4, 4) and ``frame_ids``.
    ``intrinsics(width, height, focal=None) -> K``
        Principal point at the centre, f = 525 px at 640 px width by default.
    ``render_sequence(scene, poses, K, noise=None, seed=0, frame_ids=None, supersample=1,
    workers=1) -> Iterator[RenderedFrame]``
        ``(image_bgr uint8, pose_c2w, K)`` per pose, for writers of other formats.
    ``render_frame(scene, pose_c2w, K, width, height, supersample=1, with_depth=False)
    -> FrameRender``
        One clean float32 image (plus depth in metres and the face index per pixel).
    ``CameraNoise`` / ``NOISE_PRESETS``
        Pixel noise, defocus and motion blur, exposure drift, vignetting.
    ``coverage(mapping_poses, query_poses)``
        Fraction of query poses with a mapping pose within 0.2 m and 15 deg.

Example::

    from seqace_ros.data.synthetic import generate_scene
    from seqace_ros.data.scene_folder import load_split
    root = generate_scene("/tmp/room", kind="room", mapping_frames=300, query_frames=200)
    frames = load_split(root, "train")
"""

from .layouts import SCENE_KINDS, make_scene
from .noise import NOISE_PRESETS, CameraNoise, camera_noise
from .render import FrameRender, render_frame
from .scene import Face, Light, Scene
from .sequence import RenderedFrame, intrinsics, render_sequence
from .trajectory import Trajectories, Trajectory, coverage, look_pose, make_trajectories
from .writer import generate_scene

__all__ = [
    "SCENE_KINDS", "make_scene", "NOISE_PRESETS", "CameraNoise", "camera_noise", "FrameRender",
    "render_frame", "Face", "Light", "Scene", "RenderedFrame", "intrinsics", "render_sequence",
    "Trajectories", "Trajectory", "coverage", "look_pose", "make_trajectories", "generate_scene",
]
