"""Pure facts of the Azure OpenAI / OpenAI HTTP protocol: operations, api-versions, deployment names, the shape
of a model call, usage, token counts and server-sent events. No I/O and no settings: every other package may
import these, and they import nothing of the gateway's but :mod:`shared.errors`."""
