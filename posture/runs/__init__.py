"""The run folder's format: safetensors weights with a JSON sidecar (:mod:`.checkpoint`), the sidecar's
schema checked on load (:mod:`.runconfig`), and the resume state of an interrupted training."""
