"""How a regressed pose is refined against the map's keyframes: the query-time settings of
:mod:`seqace_ros.refinement.keyframe_tracking`, kept free of OpenCV and numpy so that
``RelocConfig`` (and through it the ROS node's parameter table) can compose them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrackingConfig:
    """How a regressed pose is refined against the keyframes (RelocConfig.refine turns it on or off)."""

    # Nearest keyframes tracked into the query. 3: slower, no more precise; 1: a third less
    # refinement time, 1-2 points fewer within 1 cm (the fast settings; benchmarks/README.md, "Session 11").
    keyframes: int = 2
    max_angle_deg: float = 30.0
    # Nearest by distance plus this many metres per degree of viewing angle. The warp removes the
    # rotation between the views, while the parallax of the distance deforms the patches LK
    # compares: the tracks' error grows with the distance. 0.02 (before) gave fewer frames within
    # 2 cm on the kitchen, 0.005 a coarser median with int8 networks (benchmarks/README.md, "Session 9").
    angle_weight_m_per_deg: float = 0.01
    window_px: int = 15  # as precise as larger windows, and faster (benchmarks/README.md)
    # The regressed pose projects the points within a few pixels: one coarser level is enough
    # (0 lost recall on coarser maps; 2 cost a third more time for nothing; benchmarks/README.md).
    pyramid_levels: int = 1
    # Forward-backward check; 0: none. The shift bound and RANSAC already reject what it would,
    # at half the tracking cost.
    forward_backward_px: float = 0.0
    derotate: bool = True  # warp out the keyframe-query rotation first (LK models a shift only)
    # True: by the homography of the plane facing the keyframe at its points' median depth instead
    # (also the scale change and average parallax). Measured no better on the room and mixed on
    # two facades (benchmarks/README.md), so off, as KeyframeSettings.wide_baseline_plane_warp.
    plane_warp: bool = False
    # A patch that LK moved further than this from where the regressed pose projects it has
    # slid onto other structure (the regressed pose is within a few pixels).
    max_shift_px: float = 3.0
    inlier_threshold_px: float = 2.0
    refine_threshold_px: float = 1.0
    # The final pose weighs each match's error along its keyframe ray's image (where an error in
    # the point's depth shows, growing with the distance to the keyframe) by this, across it by 1
    # (refinement/depth_aware_pose.py). 1: an isotropic fit (with final_fit_px empty too:
    # RANSAC's own refinement, no further fit); 0.3 was as good within 1 cm on the kitchen but
    # lost a Strecha query (benchmarks/README.md, "Session 10").
    along_epipolar_weight: float = 0.5
    # The matches that fit uses: those within each of these distances (pixels) of
    # the pose so far, one fit per entry. RANSAC's inliers are cut at refine_threshold_px
    # isotropically, so which tracks with an error along their keyframe ray (as a depth error
    # puts it) count depended on which hypothesis won: RANSAC's seed alone moved frames across
    # the 1 cm line. A wide first selection lets all of them pull the pose
    # (the Cauchy loss still discounts the far ones); the tight second one drops patches that slid
    # onto repeated texture, which a wide one alone let cost the courtyards frames within 2 cm.
    # Empty: RANSAC's inliers (benchmarks/README.md, "Session 12").
    final_fit_px: tuple[float, ...] = (3.0, 1.5)
    # A keyframe at least this share of its scene depth away from the query (views far apart,
    # as on a facade photographed from a few places) deforms each patch by more than LK's shift
    # model allows: after the fit its patches are tracked again, each resampled through the
    # homography of the plane through its own point facing the keyframe, and the pose is fitted
    # once more (refinement/patch_warp.py). It took the few-view facades to the peer's precision
    # whatever the training seed, but cost a room frames where it ran at all; a room's nearest
    # keyframes lie nearer than this, the facades' further (benchmarks/README.md, "Session 13").
    # 0: never.
    point_warp_ratio: float = 0.25
    min_inliers: int = 30
    # Most tracks of a right pose agree with it; a minority fit means the patches slid onto other
    # structure (benchmarks/README.md, "Keyframe refinement").
    min_inlier_ratio: float = 0.4
    max_correction_m: float = 0.25
    max_correction_deg: float = 5.0
    # ... or up to this share of the scene's depth (a building seen from metres away).
    max_correction_depth_ratio: float = 0.1
    time_budget_ms: float = 10.0
    # RANSAC's adaptive stop ends after a few dozen hypotheses on these tracks; more of them find
    # a pose more tracks agree with, and a more precise one (benchmarks/README.md).
    min_iterations: int = 300
    # When the tight search finds too little (the regressed pose further off than a few pixels, as
    # with few mapping views far apart), a wide one: a deeper pyramid, shifts up to this share of
    # the image width and a looser RANSAC; its pose then starts the tight search again, whose
    # result is the one judged. False: one tight pass only.
    wide_search: bool = True
    wide_window_px: int = 21
    wide_pyramid_levels: int = 4
    wide_max_shift_ratio: float = 0.06
    wide_inlier_threshold_px: float = 4.0
    wide_refine_threshold_px: float = 2.0
    # A pose found by the wide search is trusted only when more of the tight tracks agree with it
    # than a regressed one needs: starting far off, patches slide onto look-alike structure more.
    wide_min_inlier_ratio: float = 0.5
    # The refined pose must keep this share of the regressed pose's scene-coordinate inliers (when
    # the caller passes them): keyframe points triangulated from noisy mapping poses (a SLAM
    # trajectory) can agree among themselves yet pull a pose centimetres off the map frame the
    # network learned, which these inliers still define. Right refinements keep nearly all of them,
    # such wrong ones about half (benchmarks/README.md, "The support check").
    min_support_kept: float = 0.8

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty when nothing)."""
        out = []
        if self.keyframes < 1:
            out.append(f"tracking.keyframes {self.keyframes} < 1")
        if self.window_px < 3:
            out.append(f"tracking.window_px {self.window_px} < 3")
        if not 0.0 < self.along_epipolar_weight <= 1.0:
            out.append(f"tracking.along_epipolar_weight {self.along_epipolar_weight} is not in (0, 1]")
        if not all(isinstance(t, (int, float)) and 0.0 < t < float("inf") for t in self.final_fit_px):
            out.append(f"tracking.final_fit_px {self.final_fit_px!r}: each entry must be a positive number of pixels")
        if not 0.0 <= self.point_warp_ratio < float("inf"):
            out.append(f"tracking.point_warp_ratio {self.point_warp_ratio} must be a share of the depth >= 0 (0: never)")
        return out
