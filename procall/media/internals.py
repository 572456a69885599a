"""The private parts of aiortc that encoded forwarding relies on, named in one place.

aiortc has no public hook to take encoded frames off a receiver or to keep its jitter buffer
from holding them back (aiortc issues #55 and #449). Forwarding therefore swaps two private
attributes of each :class:`aiortc.RTCRtpReceiver` and hands :class:`av.Packet` objects to
:class:`aiortc.RTCRtpSender`, which only packetizes packets (``_next_encoded_frame``). These
names were checked on aiortc 1.4 to 1.16; aiortc is pinned and :func:`aiortc_internals_problems`
is run by a unit test so that an upgrade which renames them fails loudly, not silently.

Video adds two (:mod:`procall.media.keyframes`): a leg watches the keyframe requests (PLI/FIR)
its far end sends by wrapping its video sender's RTCP handler on the instance, and asks a
publisher for a keyframe with its receiver's PLI sender.
"""

from __future__ import annotations

import inspect
import queue

import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc import jitterbuffer as aiortc_jitterbuffer
from aiortc import rtcdtlstransport as aiortc_dtls_module
from aiortc import rtcrtpreceiver as aiortc_receiver_module

__all__ = [
    "DECODER_QUEUE_ATTRIBUTE",
    "JITTER_BUFFER_ATTRIBUTE",
    "SENDER_RTCP_HANDLER",
    "SEND_PLI_METHOD",
    "VERIFIED_AIORTC_VERSION",
    "aiortc_internals_problems",
]

#: The aiortc release these names were verified against (pinned in requirements-dev.txt).
VERIFIED_AIORTC_VERSION = "1.16.0"
#: The receiver's ``queue.Queue`` of ``(codec, JitterFrame)`` read by its decoder thread.
DECODER_QUEUE_ATTRIBUTE = "_RTCRtpReceiver__decoder_queue"
#: The receiver's jitter buffer (``add(packet) -> (pli_flag, JitterFrame | None)``).
JITTER_BUFFER_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"
#: The receiver's coroutine ``_send_rtcp_pli(media_ssrc)``: a PLI to the far end's sender.
SEND_PLI_METHOD = "_send_rtcp_pli"
#: The sender's coroutine ``_handle_rtcp_packet(packet)``, looked up on the instance by the
#: DTLS transport for each RTCP packet routed to it (PLI and FIR included).
SENDER_RTCP_HANDLER = "_handle_rtcp_packet"


def aiortc_internals_problems(receiver: RTCRtpReceiver) -> list[str]:
    """What forwarding needs from aiortc that ``receiver`` and the installed aiortc lack.

    An empty list means the private names and calls are where forwarding expects them.
    """
    problems: list[str] = []
    if aiortc.__version__ != VERIFIED_AIORTC_VERSION:
        problems.append(f"aiortc {aiortc.__version__} is not {VERIFIED_AIORTC_VERSION}")
    if not isinstance(getattr(receiver, DECODER_QUEUE_ATTRIBUTE, None), queue.Queue):
        problems.append(f"RTCRtpReceiver.{DECODER_QUEUE_ATTRIBUTE} is not a queue.Queue")
    if not callable(getattr(getattr(receiver, JITTER_BUFFER_ATTRIBUTE, None), "add", None)):
        problems.append(f"RTCRtpReceiver.{JITTER_BUFFER_ATTRIBUTE} has no add()")
    frame_class = getattr(aiortc_jitterbuffer, "JitterFrame", None)
    if frame_class is None:
        problems.append("aiortc.jitterbuffer.JitterFrame is gone")
    else:
        frame = frame_class(data=b"x", timestamp=1)
        if (getattr(frame, "data", None), getattr(frame, "timestamp", None)) != (b"x", 1):
            problems.append("JitterFrame no longer carries data and timestamp")
    receiver_source = inspect.getsource(aiortc_receiver_module)
    if "self.__decoder_queue.put((codec, encoded_frame))" not in receiver_source:
        problems.append("RTCRtpReceiver no longer puts (codec, JitterFrame) on its decoder queue")
    if "input_q.get()" not in inspect.getsource(aiortc_receiver_module.decoder_worker):
        problems.append("decoder_worker no longer reads its input queue with get()")
    next_frame = getattr(RTCRtpSender, "_next_encoded_frame", None)
    if next_frame is None:
        problems.append("RTCRtpSender._next_encoded_frame is gone")
    elif ".pack(data)" not in inspect.getsource(next_frame):
        problems.append("RTCRtpSender no longer packetizes av.Packet input as is")
    problems.extend(_keyframe_problems(receiver))
    return problems


def _keyframe_problems(receiver: RTCRtpReceiver) -> list[str]:
    problems: list[str] = []
    if not inspect.iscoroutinefunction(getattr(receiver, SEND_PLI_METHOD, None)):
        problems.append(f"RTCRtpReceiver.{SEND_PLI_METHOD} is not a coroutine method")
    elif "RTCP_PSFB_PLI" not in inspect.getsource(getattr(RTCRtpReceiver, SEND_PLI_METHOD)):
        problems.append(f"RTCRtpReceiver.{SEND_PLI_METHOD} no longer sends a PLI")
    handler = getattr(RTCRtpSender, SENDER_RTCP_HANDLER, None)
    if not inspect.iscoroutinefunction(handler):
        problems.append(f"RTCRtpSender.{SENDER_RTCP_HANDLER} is not a coroutine method")
    elif "RTCP_PSFB_PLI" not in inspect.getsource(handler):
        problems.append(f"RTCRtpSender.{SENDER_RTCP_HANDLER} no longer handles PLI")
    if f"recipient.{SENDER_RTCP_HANDLER}(packet)" not in inspect.getsource(aiortc_dtls_module):
        problems.append("RTCDtlsTransport no longer hands RTCP to recipient._handle_rtcp_packet")
    return problems
