"""RedisGears 1.2 (Python) inside the gearcam runtime: see docs/gears.md.

Modules, one job each: builder (GearsBuilder and its steps), engine (running steps),
readers (batch reads, key matching), registrations, streams (StreamReader workers),
executions, sessions (persistence), script (a script's globals), redisai_api
(`import redisAI`), requirements, link (blocking backing-Redis connections),
lifecycle (RG.PYEXECUTE's session logic, restore) and service (threads and events).
"""

from gearcam.runtime.gears.service import GearsService

__all__ = ["GearsService"]
