"""Realistic IHE PCD-01 ORU^R01 messages for the gateway tests, and an in-memory producer."""

from __future__ import annotations

from vigil.gateways.producer import Unavailable

PATIENT_MRN = "4711-0815"
PATIENT_NAME = "Mustermann^Erika^Q"
BIRTH = "19560312"

MSH = ("MSH|^~\\&|GW_PHILIPS^00095F0000ABCDEF^EUI-64|MICU_A|VIGIL|HOSP|{time}||ORU^R01^ORU_R01|"
       "{ctrl}|P|{version}|||NE|AL||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^"
       "1.3.6.1.4.1.19376.1.6.1.1.1^ISO")
PID = f"PID|||{PATIENT_MRN}^^^HOSP^MR~999888^^^NATIONAL^PI||{PATIENT_NAME}||{BIRTH}|F"
PV1 = "PV1||I|MICU^12^B"
OBR = "OBR|{n}|{ctrl}^GW_PHILIPS||182777000^monitoring of patient^SNOMED-CT|||{time}"


def obx(n: int, code: str, value: str, unit: str, *, status: str = "R", time: str = "",
        vtype: str = "NM", where: str = "1.1.1.1") -> str:
    return f"OBX|{n}|{vtype}|{code}|{where}|{value}|{unit}|||||{status}|||{time}"


HR = "147842^MDC_ECG_HEART_RATE^MDC"
SPO2 = "150456^MDC_PULS_OXIM_SAT_O2^MDC"
RR = "151562^MDC_RESP_RATE^MDC"
NIBP_SYS = "150021^MDC_PRESS_BLD_NONINV_SYS^MDC"
NIBP_DIA = "150022^MDC_PRESS_BLD_NONINV_DIA^MDC"
TEMP = "150344^MDC_TEMP^MDC"
BPM = "264864^MDC_DIM_BEAT_PER_MIN^MDC"
PCT = "262688^MDC_DIM_PERCENT^MDC"
RPM = "264928^MDC_DIM_RESP_PER_MIN^MDC"
MMHG = "266016^MDC_DIM_MMHG^MDC"
DEGC = "268192^MDC_DIM_DEGC^MDC"


def oru(ctrl: str = "MSG0001", *, time: str = "20260301115900+0100", hr: str = "82",
        version: str = "2.6", extra: list[str] | None = None, sep: str = "\r",
        obr_groups: int = 1) -> bytes:
    """A multi-OBX PCD-01 message: the MDS/VMD/channel rows, HR, SpO2, RR, NIBP, temp."""
    segs = [MSH.format(time=time, ctrl=ctrl, version=version), PID, PV1]
    n = 0
    for g in range(1, obr_groups + 1):
        segs.append(OBR.format(n=g, ctrl=ctrl, time=time))
        segs.append(f"OBX|{n + 1}||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X")
        segs.append(f"OBX|{n + 2}||69798^MDC_DEV_ECG_VMD^MDC|1.1.0.0|||||||X")
        n += 2
        rows = [(HR, hr if g == 1 else "84", BPM), (SPO2, "97", PCT), (RR, "18", RPM),
                (NIBP_SYS, "121", MMHG), (NIBP_DIA, "77", MMHG), (TEMP, "37.1", DEGC)]
        for code, value, unit in rows:
            n += 1
            segs.append(obx(n, code, value, unit, time=time if g == 1 else ""))
    segs.extend(extra or [])
    return (sep.join(segs) + sep).encode()


class FakeProducer:
    """Stands in for GatewayProducer where no broker is needed: keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.down = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, items: list[tuple[str, bytes | None, bytes]]) -> None:
        if self.down:
            raise Unavailable("test broker is down")
        self.sent.extend(items)

    def topic(self, name: str) -> list[bytes]:
        return [v for t, _, v in self.sent if t == name]
