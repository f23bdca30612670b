package procfs

// Descendants lists every process below root (children, their children
// …), read from the parent pids of every process's stat line; a process
// that exits meanwhile is simply missed.
func Descendants(root int) []int {
	pids, _ := Pids()
	children := map[int][]int{}
	for _, pid := range pids {
		if st, err := ReadStat(pid); err == nil {
			children[st.Ppid] = append(children[st.Ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}
