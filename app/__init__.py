"""The Gradio apps: the web demo (python -m app) and the labeling tool (python -m app.label).

Gradio phones home (analytics, version check) unless told not to; the demo must work offline
and not report its visitors, so the switch is set before anything imports gradio.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
