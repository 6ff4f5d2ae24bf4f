"""BlazePose and what is read from it: the detector (still photos and tracking video), the landmark
cache, the posture geometry (features in shoulder widths and centimetres, views, "cannot assess"),
and the drawing of landmarks on a photo."""
