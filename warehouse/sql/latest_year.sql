-- The latest year with students in the warehouse (null when there are none).
select max(year) from students
