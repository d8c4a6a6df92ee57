/**
 * The one V2 codec of the project (`@mlserve/protocol`, browser-safe), re-exported for the client's
 * modules: every other file of this package imports tensor and message encoding from here, so the
 * client never grows a second copy.
 */
export {
  decodeV2Response,
  encodeV2Request,
  fromV2Datatype,
  parseHeaderLength,
  parseShape,
  type RequestedOutput,
  tensorFromBinary,
  tensorToBinary,
  V2_DATATYPE,
  type V2Response,
} from '@mlserve/protocol';
