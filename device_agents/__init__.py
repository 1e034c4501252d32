"""Device agents: light processes on lab hosts that lease profile jobs and run stock llama.cpp.

This package must import neither torch nor the database layer: it is installed on machines that
have phones on USB, and talks to the coordinator only over HTTP.
"""
