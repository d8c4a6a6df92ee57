/**
 * The one V2 tensor codec of the project, re-exported for the client's modules: every other file
 * of this package imports tensor encoding from here, so the client never grows a second copy.
 */
export {
  fromV2Datatype,
  parseShape,
  tensorDataToJson,
  tensorFromBinary,
  tensorFromJson,
  tensorToBinary,
  V2_DATATYPE,
} from '@mlserve/http';
