// Package fsutil holds the one file-writing primitive that the CNI plugin,
// the node agent, the operator's certificate files and the lab share:
// replacing a file so that no reader, and no process reading after a crash,
// ever sees it half written.
//
// The price: every write costs two fsyncs (the file and its directory).
// The files written this way are small and written rarely (state files,
// certificates, kubeconfigs), so durability wins over speed.
package fsutil
