"""Reason codes of the face pipeline and its exceptions.

Every refusal the clerk sees carries one of these codes; the texts say what to do
next (step closer, turn on the light), because the clerk has a queue and the farmer
may not read the screen. Codes are registered in the shared catalogue so the
terminal UI, the ledger record and the gateway show the same words.
"""

from protocols import reasons
from protocols.reasons import ReasonError

NO_FACE = "face_no_face"
SEVERAL_FACES = "face_several_faces"
TOO_SMALL = "face_too_small"
TOO_DARK = "face_too_dark"
TOO_BLURRED = "face_too_blurred"
NO_MATCH = "face_no_match"
AMBIGUOUS = "face_ambiguous"
MISMATCH = "face_mismatch"
NOT_ENROLLED = "face_not_enrolled"
GALLERY_EMPTY = "face_gallery_empty"
NOT_LIVE = "face_not_live"
GALLERY_WRONG_KEY = "face_gallery_wrong_key"
GALLERY_CORRUPT = "face_gallery_corrupt"
GALLERY_INVALID = "face_gallery_invalid"
KEY_INVALID = "face_key_invalid"
IMAGE_UNREADABLE = "face_image_unreadable"
ENROLL_INCONSISTENT = "face_enroll_inconsistent"

POOR_CAPTURE = (NO_FACE, SEVERAL_FACES, TOO_SMALL, TOO_DARK, TOO_BLURRED)

reasons.register({
    # A poor capture's text starts with what to do, up to the colon: that part is
    # spoken at the counter while the kiosk keeps trying (firmware.voice.spoken_reason).
    NO_FACE: ("请正对摄像头：未检测到人脸", "Look straight at the camera: no face found"),
    SEVERAL_FACES: ("请只让购买人面对摄像头：画面中有多张人脸",
                    "Only the buyer should face the camera: several faces in view"),
    TOO_SMALL: ("请靠近一点：人脸太小", "Step a little closer: the face is too small"),
    TOO_DARK: ("光线太暗：请开灯或面向光源", "Too dark: turn on the light or face the light"),
    TOO_BLURRED: ("请保持不动：图像模糊，或擦拭镜头", "Hold still: the image is blurred, or wipe the camera lens"),
    NO_MATCH: ("未找到匹配的登记人员，请刷卡", "No enrolled person matches this face: use the card"),
    AMBIGUOUS: ("与多名登记人员相似，无法确认，请刷卡",
                "Face resembles several enrolled people: use the card"),
    MISMATCH: ("人脸与持卡人不符", "Face does not match the card holder"),
    NOT_ENROLLED: ("该主体未登记人脸", "No face is enrolled for this subject"),
    GALLERY_EMPTY: ("本店人脸库为空", "The shop's face gallery is empty"),
    NOT_LIVE: ("未通过活体检测，请眨眼或轻微转头", "Liveness check failed: blink or turn your head slightly"),
    GALLERY_WRONG_KEY: ("人脸库不是用本机密钥加密的，无法解密",
                        "Face gallery was not encrypted with this device's key"),
    GALLERY_CORRUPT: ("人脸库文件损坏或被篡改", "Face gallery file is damaged or was altered"),
    GALLERY_INVALID: ("人脸库文件格式无效", "Face gallery file has an invalid format"),
    KEY_INVALID: ("设备密钥无效", "Device key is invalid"),
    IMAGE_UNREADABLE: ("无法读取图像", "Image cannot be read"),
    ENROLL_INCONSISTENT: ("登记照片不是同一个人", "The enrollment photos do not show the same person"),
})


class FaceError(ReasonError):
    """Base of the face package's errors."""


class PoorCapture(FaceError):
    """The frame cannot give a trustworthy encoding; the code says what to fix."""


class GalleryError(FaceError):
    """The gallery file cannot be used (wrong key, damaged, not a gallery)."""


class DeviceKeyError(FaceError):
    """The device key is missing or malformed."""
