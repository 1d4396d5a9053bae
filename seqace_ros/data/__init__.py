"""Data sources: the DSAC*/ACE folder layout, ROS 2 bags and synthetic scenes."""
