"""What the job writes: documents and the statistics they carry, computed from window views."""
