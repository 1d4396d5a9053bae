// Minimal absolute-pose solver: three bearing vectors and their world points give up to four
// camera poses. Lambda Twist (Persson & Nordberg, ECCV 2018), written from the paper.
#pragma once

#include <Eigen/Core>

#include "seqace/types.h"

namespace seqace {

// bearings: unit vectors in the camera frame; points: the matching world points.
// Writes the solutions with positive depths into out[0..3] and returns how many there are
// (0 for degenerate input: coincident or collinear points, parallel bearings).
int p3p_lambda_twist(const Eigen::Vector3d bearings[3], const Eigen::Vector3d points[3],
                     Pose out[4]);

}  // namespace seqace
